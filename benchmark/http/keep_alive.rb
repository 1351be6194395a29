# frozen_string_literal: true

# The HTTP benchmark on benchmark/server/event.rb (the test suite's scheduler), every
# selector plus the blocking baseline, keep-alive by default (--close: one request per
# connection), wrk with 8 and 64 connections.

require_relative "servers"
require_relative "wrk"

module BenchmarkRun
  SERVER = File.join(ROOT, "benchmark/server/event.rb")
  CONNECTIONS = [8, 64].freeze
  WARMUP_SECONDS = 1

  module_function

  # Seconds after which each server stops by itself, even if this script is killed with
  # SIGKILL: the whole HTTP phase with room to spare.
  def server_time_limit(options, count)
    per_server = WARMUP_SECONDS + options.rounds * CONNECTIONS.size * options.duration
    (per_server + 2 * (1 + options.rounds * CONNECTIONS.size)) * count + 60
  end

  def start_event_server(name, options, cpu, time_limit)
    arguments = ["0", time_limit.to_s]
    arguments << "--close" if options.close
    start_server(name, pinned(cpu, [RbConfig.ruby, SERVER, *arguments]), env: { "IO_EVENT_SELECTOR" => name })
  end

  # All servers run side by side (an idle one costs nothing), and the wrk runs alternate
  # between them, in reverse order every other round, so that background load on the
  # machine hits every selector alike. The best round per selector counts.
  def keep_alive(options, names)
    cpus = pinning
    server_cpu, wrk_cpu = cpus
    mode = options.close ? "close (one request per connection)" : "keep-alive"
    puts "HTTP benchmark (benchmark/server/event.rb): GET / answered with 204, #{mode}; wrk -t1 " \
         "-d#{options.duration}s --latency; best of #{options.rounds} alternating rounds; " \
         "#{cpus ? "server on CPU #{server_cpu}, wrk on CPU #{wrk_cpu}" : 'no pinning (fewer than 2 CPUs)'}"
    failures = []
    servers = {}
    names.each do |name|
      servers[name] = start_event_server(name, options, server_cpu, server_time_limit(options, names.size))
      puts "  #{servers[name].banner}"
      run_wrk(servers[name].port, CONNECTIONS.last, WARMUP_SECONDS, wrk_cpu, close: options.close)
    rescue Failure, SystemCallError => error
      failures << error.message
      puts "  #{name}: FAILED: #{error.message}"
    end

    best = {}
    options.rounds.times do |round|
      order = round.even? ? servers.keys : servers.keys.reverse
      CONNECTIONS.each do |connections|
        order.each do |name|
          server = servers[name]
          next unless server

          begin
            before = cpu_seconds(server.pid)
            result = run_wrk(server.port, connections, options.duration, wrk_cpu, close: options.close)
            after = cpu_seconds(server.pid)
            raise Failure, "wrk completed no request" if result[:requests].zero?
          rescue Failure, SystemCallError => error
            status, last_words = stop_server(servers.delete(name))
            reason = "#{error.message}; server #{status.inspect}: #{summarize_output(last_words)}"
            failures << "#{name} c#{connections}: #{reason}"
            puts "  round #{round + 1}  #{name} c#{connections}: FAILED: #{reason}"
            next
          end
          result[:cpu_us] = (after - before) * 1e6 / result[:requests] if result[:requests].positive?
          result.merge!(name: name, connections: connections)
          puts format("  round %d  %-8s c%-3d %10s req/s  p99 %7s ms  %6s us CPU/request",
                      round + 1, name, connections, format_number(result[:rps]),
                      result[:p99_ms] ? format("%.2f", result[:p99_ms]) : "-", format_number(result[:cpu_us], 1))
          $stdout.flush
          key = [name, connections]
          best[key] = result if best[key].nil? || result[:rps] > best[key][:rps]
        end
      end
    end

    servers.each do |name, server|
      status, last_words = stop_server(server)
      next if status&.success?

      failures << "#{name}: server exited badly (#{status.inspect}): #{summarize_output(last_words)}"
    end
    results = names.product(CONNECTIONS).filter_map { |key| best[key] }
    [results, failures]
  end

  def keep_alive_table(results, options)
    epoll = results.select { |r| r[:name] == "EPoll" }.to_h { |r| [r[:connections], r[:rps]] }
    headers = ["selector", "connections", "requests/s", "p99 ms", "CPU us/request", "errors", "vs EPoll"]
    rows = results.map do |r|
      base = epoll[r[:connections]]
      [
        r[:name], r[:connections].to_s, format_number(r[:rps]),
        r[:p99_ms] ? format("%.2f", r[:p99_ms]) : "-",
        format_number(r[:cpu_us], 1), r[:errors].to_s,
        base ? format("%.2fx", r[:rps] / base) : "-"
      ]
    end
    puts
    puts "HTTP (#{options.close ? 'close' : 'keep-alive'}): requests/s and p99 from wrk; CPU us/request = server " \
         "utime+stime over the run / requests"
    print_table(headers, rows)
    puts "(no EPoll in this build: the vs EPoll column is empty)" if epoll.empty?
  end

  def keep_alive_target(results)
    uring = results.select { |r| r[:name] == "URing" }
    epoll = results.select { |r| r[:name] == "EPoll" }.to_h { |r| [r[:connections], r[:rps]] }
    return nil if uring.empty?
    return "target: URing req/s >= EPoll: no EPoll (n/a)" if epoll.empty?

    ratios = uring.map { |r| [r[:connections], epoll[r[:connections]] && r[:rps] / epoll[r[:connections]]] }
    met = ratios.all? { |_, ratio| ratio && ratio >= 1.0 }
    shown = ratios.map { |c, ratio| "c#{c} #{ratio ? format('%.2fx', ratio) : '-'}" }.join(", ")
    "target: URing req/s >= EPoll: #{shown} (#{met ? 'met' : 'NOT met'})"
  end
end
