# frozen_string_literal: true

# The connection-per-request HTTP benchmark: benchmark/server/upstream.rb (io-event's
# own benchmark server, in our words) driven by `wrk -c8 -H "Connection: close"`, for
# every build (before/after) and selector, measured in the same run.
#
# Per build and selector it records, under "http_close.":
#   rps                   requests/s (wrk; the best round)
#   cpu_us                server CPU (utime+stime, all threads) per request (lowest round)
#   context_switches      voluntary + non-voluntary switches of the server's threads per
#                         request (lowest round)
#   threads               native threads of the server after the runs
#   instructions, instructions_extension, instructions_libc
#                         user-space instructions per request, the server under
#                         callgrind (counters zeroed after a warm-up, dumped after a wrk
#                         run; the requests wrk completed in between)

require "tmpdir"
require_relative "servers"
require_relative "wrk"
require_relative "../counts/tools"

module BenchmarkRun
  UPSTREAM = File.join(ROOT, "benchmark/server/upstream.rb")
  PER_REQUEST_CONNECTIONS = 8
  CALLGRIND_SECONDS = 3

  module_function

  def upstream_env(build, selector)
    { "IO_EVENT_SELECTOR" => selector, BenchBuild::VARIABLE => build.dir, "RUBYOPT" => nil }
  end

  # Runs wrk once against +server+ and returns the figures of that run.
  def per_request_round(server, duration, wrk_cpu)
    cpu_before = cpu_seconds(server.pid)
    switches_before = context_switches(server.pid)
    result = run_wrk(server.port, PER_REQUEST_CONNECTIONS, duration, wrk_cpu, close: true)
    cpu_after = cpu_seconds(server.pid)
    switches_after = context_switches(server.pid)
    requests = result[:requests]
    raise Failure, "wrk completed no request" if requests.zero?

    {
      "rps" => result[:rps],
      "cpu_us" => (cpu_after - cpu_before) * 1e6 / requests,
      "context_switches" => (switches_after - switches_before).fdiv(requests),
      "threads" => thread_count(server.pid),
      "errors" => result[:errors]
    }
  end

  # Returns [{ label => { selector => { "http_close.metric" => value } } }, failures].
  def per_request(options, builds, selectors_of)
    server_cpu, wrk_cpu = pinning
    limit = (options.rounds + 1) * (options.duration + 3) * builds.size * 3 + 60
    puts "HTTP connection per request (benchmark/server/upstream.rb): wrk -t1 -c#{PER_REQUEST_CONNECTIONS} " \
         "-d#{options.duration}s -H 'Connection: close'; builds: #{builds.map(&:label).join(', ')}; " \
         "best of #{options.rounds} alternating rounds"
    figures = Hash.new { |h, k| h[k] = Hash.new { |hh, kk| hh[kk] = {} } }
    failures = []
    servers = {}
    builds.each do |build|
      selectors_of[build.label].each do |selector|
        key = [build.label, selector]
        command = pinned(server_cpu, [RbConfig.ruby, UPSTREAM, "0", limit.to_s])
        servers[key] = start_server("#{selector} [#{build.label}]", command, env: upstream_env(build, selector))
        run_wrk(servers[key].port, PER_REQUEST_CONNECTIONS, 1, wrk_cpu, close: true)
      rescue Failure, SystemCallError => error
        failures << "http_close #{selector} [#{build.label}]: #{error.message}"
        puts "  #{selector} [#{build.label}]: FAILED: #{error.message}"
      end
    end

    options.rounds.times do |round|
      order = round.even? ? servers.keys : servers.keys.reverse
      order.each do |key|
        server = servers[key] or next
        begin
          values = per_request_round(server, options.duration, wrk_cpu)
        rescue Failure, SystemCallError => error
          status, last_words = stop_server(servers.delete(key))
          failures << "http_close #{server.name}: #{error.message}; #{status.inspect}: #{summarize_output(last_words)}"
          next
        end
        puts format("  round %d  %-16s %9s req/s  %6s us CPU/req  %5.2f switches/req  %d threads",
                    round + 1, server.name, format_number(values["rps"]), format_number(values["cpu_us"], 1),
                    values["context_switches"], values["threads"])
        $stdout.flush
        kept = figures[key[0]][key[1]]
        values.each do |metric, value|
          name = "http_close.#{metric}"
          better = metric == "rps" ? kept[name].to_f < value : kept[name].nil? || value < kept[name]
          kept[name] = value if better || %w[threads errors].include?(metric)
        end
      end
    end
    servers.each_value { |server| stop_server(server) }

    callgrind_per_request(options, builds, selectors_of, figures, failures) if options.callgrind && BenchTools.valgrind?
    [figures, failures]
  end

  # The server under callgrind, one build and selector at a time.
  def callgrind_per_request(options, builds, selectors_of, figures, failures)
    server_cpu, wrk_cpu = pinning
    puts "  instructions per request: the server under callgrind, wrk -c#{PER_REQUEST_CONNECTIONS} " \
         "-d#{CALLGRIND_SECONDS}s"
    builds.each do |build|
      selectors_of[build.label].each do |selector|
        next if selector == "Select"

        Dir.mktmpdir("bench-http-callgrind") do |dir|
          costs = callgrind_server(build, selector, dir, server_cpu, wrk_cpu)
          figures[build.label][selector].merge!(costs)
          puts format("  callgrind %-16s %s", "#{selector} [#{build.label}]",
                      costs.map { |k, v| "#{k.delete_prefix('http_close.')} #{format_number(v)}" }.join("  "))
        rescue Failure, BenchTools::Failure, SystemCallError => error
          failures << "http_close callgrind #{selector} [#{build.label}]: #{error.message}"
          puts "  callgrind #{selector} [#{build.label}]: FAILED: #{error.message}"
        end
      end
    end
  end

  def callgrind_server(build, selector, dir, server_cpu, wrk_cpu)
    out = File.join(dir, "callgrind.out")
    command = pinned(server_cpu, ["valgrind", "--tool=callgrind", "--callgrind-out-file=#{out}",
                                  "--log-file=#{File.join(dir, 'valgrind.log')}",
                                  RbConfig.ruby, UPSTREAM, "0", "300"])
    server = start_server("#{selector} [#{build.label}] callgrind", command, env: upstream_env(build, selector),
                                                                              timeout: 120)
    begin
      run_wrk(server.port, PER_REQUEST_CONNECTIONS, 1, wrk_cpu, close: true)
      callgrind_control("-z", server.pid)
      result = run_wrk(server.port, PER_REQUEST_CONNECTIONS, CALLGRIND_SECONDS, wrk_cpu, close: true)
      callgrind_control("-d", server.pid)
    ensure
      stop_server(server, 20)
    end
    dumps = Dir.glob("#{out}.*").sort_by { |path| path[/\.(\d+)\z/, 1].to_i }
    raise Failure, "callgrind wrote no dump" if dumps.empty?
    raise Failure, "wrk completed no request" if result[:requests].zero?

    costs = BenchTools.parse_callgrind(File.read(dumps.first))
    n = result[:requests].to_f
    {
      "http_close.instructions" => costs[:total] / n,
      "http_close.instructions_extension" => costs[:extension] / n,
      "http_close.instructions_libc" => costs[:libc] / n
    }
  end

  def callgrind_control(flag, pid)
    output = IO.popen(["callgrind_control", flag, pid.to_s], err: [:child, :out], &:read)
    raise Failure, "callgrind_control #{flag} #{pid} failed: #{output.strip[0, 300]}" unless $?.success?
  end
end
