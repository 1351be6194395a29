#!/usr/bin/env ruby
# frozen_string_literal: true

# `rake bench`: the HTTP benchmark under wrk for every selector, then the selector
# microbenchmarks.
#
#   ruby benchmark/run.rb [--close] [--duration=SECONDS] [--rounds=N]
#                         [--selectors=URing,EPoll,...] [--no-http] [--no-micro]
#
# For each selector defined here (URing, EPoll, Select) and the blocking baseline (one
# thread per connection, no scheduler), it starts benchmark/server/event.rb on a free
# port of 127.0.0.1 and checks that it answers. Then it runs `wrk -t1 --latency` with 8
# and with 64 connections against each server in turn, for a few rounds (alternating
# the order; the best round counts), reading the server's CPU time from /proc/PID/stat
# around each run, and stops the servers. Servers and wrk are pinned to different cores
# when there are two. It prints one table, runs benchmark/selector/all.rb, and lists
# the targets.
#
# Exits non-zero when a server does not start or answer, wrk fails, or a microbenchmark
# run fails. Every process it starts is stopped on the way out, also on Ctrl-C.

require "etc"
require "rbconfig"
require "socket"
require "io/wait"

module BenchmarkRun
  ROOT = File.expand_path("..", __dir__)
  SERVER = File.join(ROOT, "benchmark/server/event.rb")
  MICRO = File.join(ROOT, "benchmark/selector/all.rb")
  SETUP = File.join(ROOT, "benchmark/setup")
  SELECTOR_ORDER = %w[URing EPoll Select Blocking].freeze
  CONNECTIONS = [8, 64].freeze
  WARMUP_SECONDS = 1
  START_TIMEOUT = 20
  MICRO_TIMEOUT = 150
  CLOCK_TICKS = Etc.sysconf(Etc::SC_CLK_TCK)

  class Failure < StandardError; end

  Options = Struct.new(:close, :duration, :rounds, :selectors, :http, :micro, keyword_init: true)

  # Every child process started here, so that all of them are stopped on the way out.
  module Children
    @pids = []

    class << self
      def spawn(*command, **options)
        pid = Process.spawn(*command, **options)
        @pids << pid
        pid
      end

      # Waits up to +timeout+ seconds; returns the Process::Status, or nil if still running.
      def wait(pid, timeout)
        deadline = now + timeout
        loop do
          _, status = Process.waitpid2(pid, Process::WNOHANG)
          if status
            @pids.delete(pid)
            return status
          end
          return nil if now >= deadline

          sleep 0.02
        end
      rescue Errno::ECHILD
        @pids.delete(pid)
        nil
      end

      # SIGTERM, then SIGKILL if it has not gone after +grace+ seconds.
      def stop(pid, grace = 5)
        signal(pid, "TERM")
        status = wait(pid, grace)
        return status if status

        signal(pid, "KILL")
        wait(pid, 2)
      end

      def stop_all
        @pids.dup.each { |pid| stop(pid, 2) }
      end

      def signal(pid, name)
        Process.kill(name, pid)
      rescue Errno::ESRCH
        nil
      end

      def now
        Process.clock_gettime(Process::CLOCK_MONOTONIC)
      end
    end
  end

  module_function

  def now
    Process.clock_gettime(Process::CLOCK_MONOTONIC)
  end

  def parse(argv)
    options = Options.new(close: false, duration: 3, rounds: 2, selectors: nil, http: true, micro: true)
    argv.each do |argument|
      case argument
      when "--close" then options.close = true
      when /\A--duration=(\d+)\z/ then options.duration = Integer(Regexp.last_match(1), 10)
      when /\A--rounds=(\d+)\z/ then options.rounds = Integer(Regexp.last_match(1), 10)
      when /\A--selectors=(.+)\z/ then options.selectors = Regexp.last_match(1).split(",").map(&:strip)
      when "--no-http" then options.http = false
      when "--no-micro" then options.micro = false
      else raise ArgumentError, "unknown argument #{argument}"
      end
    end
    raise ArgumentError, "--duration must be at least 1" if options.duration < 1
    raise ArgumentError, "--rounds must be at least 1" if options.rounds < 1

    options
  end

  def which(name)
    ENV.fetch("PATH", "").split(File::PATH_SEPARATOR).map { |dir| File.join(dir, name) }
       .find { |path| File.file?(path) && File.executable?(path) }
  end

  # wrk for the HTTP part, strace for the syscall counts: benchmark/setup installs
  # whatever is missing.
  def ensure_tools(options)
    needed = []
    needed << "wrk" if options.http
    needed << "strace" if options.micro
    return if needed.all? { |tool| which(tool) }

    puts "installing benchmark tools (benchmark/setup) ..."
    system("bash", SETUP) or warn "benchmark/setup failed"
    raise Failure, "wrk is not installed and benchmark/setup could not install it" if options.http && !which("wrk")

    warn "strace is missing: no syscall counts" if options.micro && !which("strace")
  end

  # Selector names defined by this build, asked of a child so a broken extension cannot
  # take this script down.
  def available_selectors
    script = <<~RUBY
      require "io/event"
      names = IO::Event::Selector.constants.select do |name|
        klass = IO::Event::Selector.const_get(name)
        klass.is_a?(Class) && klass.method_defined?(:select)
      end
      puts names
    RUBY
    reader, writer = IO.pipe
    pid = Children.spawn(RbConfig.ruby, "-I", File.join(ROOT, "lib"), "-e", script, out: writer)
    writer.close
    output = read_until_eof(reader, 30)
    status = Children.wait(pid, 5) || Children.stop(pid, 1)
    raise Failure, "could not load io/event to list the selectors" unless status&.success?

    output.split
  ensure
    reader&.close
  end

  # CPUs this process may run on ("Cpus_allowed_list: 0-3,6").
  def allowed_cpus
    line = File.foreach("/proc/self/status").find { |l| l.start_with?("Cpus_allowed_list:") }
    return [] unless line

    line.split(":", 2).last.strip.split(",").flat_map do |part|
      first, last = part.split("-").map { |n| Integer(n, 10) }
      (first..(last || first)).to_a
    end
  rescue SystemCallError, ArgumentError
    []
  end

  # [server_cpu, wrk_cpu] or nil when there are not two cores (or no taskset).
  def pinning
    cpus = allowed_cpus
    return nil if cpus.size < 2 || !which("taskset")

    [cpus[0], cpus[1]]
  end

  def pinned(cpu, command)
    cpu ? ["taskset", "-c", cpu.to_s, *command] : command
  end

  # utime + stime of the whole process (all its threads, live or gone), in seconds.
  # Raises Failure when the process has exited (a zombie, or gone).
  def cpu_seconds(pid)
    stat = begin
      File.read("/proc/#{pid}/stat")
    rescue Errno::ENOENT, Errno::ESRCH
      raise Failure, "server process is gone"
    end
    fields = stat[(stat.rindex(")") + 2)..].split
    raise Failure, "server process exited" if fields[0] == "Z"

    # Fields after the command name start at field 3 (state); utime is 14, stime 15.
    (Integer(fields[11], 10) + Integer(fields[12], 10)).fdiv(CLOCK_TICKS)
  end

  # -- one server --------------------------------------------------------------

  Server = Struct.new(:name, :pid, :port, :output, :banner, :drain, keyword_init: true)

  # Keeps reading what a server prints (so a chatty one can never block on a full pipe)
  # and keeps the last 16 KiB of it, for the report.
  def drain(io)
    Thread.new do
      kept = +""
      loop do
        kept << io.readpartial(4096)
        kept = kept.byteslice(-16_384, 16_384) if kept.bytesize > 32_768
      end
    rescue EOFError, IOError
      kept
    end
  end

  # Seconds after which each server stops by itself, even if this script is killed with
  # SIGKILL: the whole HTTP phase with room to spare.
  def server_time_limit(options, count)
    per_server = WARMUP_SECONDS + options.rounds * CONNECTIONS.size * options.duration
    (per_server + 2 * (1 + options.rounds * CONNECTIONS.size)) * count + 60
  end

  def start_server(name, options, cpu, time_limit)
    env = { "IO_EVENT_SELECTOR" => name }
    arguments = ["0", time_limit.to_s]
    arguments << "--close" if options.close
    command = pinned(cpu, [RbConfig.ruby, SERVER, *arguments])
    reader, writer = IO.pipe
    pid = Children.spawn(env, *command, out: writer, err: [:child, :out])
    writer.close
    server = Server.new(name: name, pid: pid, output: reader)
    banner = read_line(reader, START_TIMEOUT)
    unless banner&.start_with?("listening ")
      rest = read_available(reader)
      raise Failure, "#{name}: server did not start: #{[banner, rest].compact.join.strip[0, 2000]}"
    end

    server.banner = banner.strip
    server.port = Integer(banner[%r{127\.0\.0\.1:(\d+)/}, 1], 10)
    server.drain = drain(reader)
    check_answer(server)
    server
  rescue Failure
    stop_server(server) if server
    raise
  end

  def read_line(io, timeout)
    line = +""
    deadline = now + timeout
    until line.end_with?("\n")
      remaining = deadline - now
      return (line.empty? ? nil : line) if remaining <= 0 || !io.wait_readable(remaining)

      chunk = io.read_nonblock(1, exception: false)
      return (line.empty? ? nil : line) if chunk.nil?
      next if chunk == :wait_readable

      line << chunk
    end
    line
  end

  # Everything +io+ gives until EOF or +timeout+ seconds; yields each chunk as it comes.
  def read_until_eof(io, timeout)
    output = +""
    deadline = now + timeout
    while (remaining = deadline - now).positive? && io.wait_readable(remaining)
      chunk = io.read_nonblock(65_536, exception: false)
      break if chunk.nil?
      next if chunk == :wait_readable

      yield chunk if block_given?
      output << chunk
    end
    output
  end

  def read_available(io)
    text = +""
    loop do
      chunk = io.read_nonblock(4096, exception: false)
      break if chunk.nil? || chunk == :wait_readable

      text << chunk
    end
    text
  end

  # One real request, answered with 204, before wrk starts.
  def check_answer(server)
    socket = Socket.tcp("127.0.0.1", server.port, connect_timeout: 5)
    socket.write("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    response = +""
    deadline = now + 5
    until response.include?("\r\n\r\n")
      remaining = deadline - now
      raise Failure, "#{server.name}: no answer within 5s" if remaining <= 0 || !socket.wait_readable(remaining)

      chunk = socket.read_nonblock(4096, exception: false)
      raise Failure, "#{server.name}: connection closed without an answer" if chunk.nil?

      response << chunk unless chunk == :wait_readable
    end
    return if response.start_with?("HTTP/1.1 204")

    raise Failure, "#{server.name}: unexpected answer #{response.lines.first.inspect}"
  rescue SystemCallError, IOError => error
    raise Failure, "#{server.name}: server does not answer: #{error.message}"
  ensure
    socket&.close
  end

  # The lines of a server's output that say what went wrong, not a whole crash dump.
  def summarize_output(text)
    lines = text.lines.map(&:strip).reject { |line| line.empty? || line.start_with?("c:0") }
    telling = lines.grep(/\[BUG\]|Error|error|event\.rb:/).first(3)
    (telling.empty? ? lines.last(2) : telling).join(" | ")[0, 600]
  end

  # Returns [exit status, the server's last words].
  def stop_server(server)
    status = Children.stop(server.pid)
    output =
      if server.drain
        # The pipe ends when the server (and any child holding it) is gone.
        server.drain.join(2) ? server.drain.value.to_s : ""
      else
        read_available(server.output)
      end
    server.output.close
    [status, output]
  end

  # -- wrk -------------------------------------------------------------------

  def run_wrk(port, connections, duration, cpu)
    command = pinned(cpu, ["wrk", "-t1", "-c#{connections}", "-d#{duration}s", "--latency", "--timeout", "2s",
                           "http://127.0.0.1:#{port}/"])
    reader, writer = IO.pipe
    pid = Children.spawn(*command, out: writer, err: [:child, :out])
    writer.close
    deadline = now + duration + 20
    output = read_until_eof(reader, duration + 20)
    status = Children.wait(pid, [deadline - now, 1].max)
    unless status
      Children.stop(pid, 1)
      raise Failure, "wrk did not finish in time"
    end
    raise Failure, "wrk failed (#{status}): #{output.strip[0, 1000]}" unless status.success?

    parse_wrk(output)
  ensure
    reader&.close
  end

  UNITS = { "us" => 1e-3, "ms" => 1.0, "s" => 1e3, "m" => 60e3 }.freeze

  def parse_wrk(output)
    rps = output[/^Requests\/sec:\s+([\d.]+)/, 1]
    total = output[/^\s*(\d+) requests in /, 1]
    p99 = output.match(/^\s+99(?:\.0+)?%\s+([\d.]+)(us|ms|s|m)\b/)
    raise Failure, "could not read wrk output:\n#{output}" unless rps && total

    errors = output.match(/Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/)
    non2xx = output[/Non-2xx or 3xx responses: (\d+)/, 1]
    {
      rps: Float(rps),
      requests: Integer(total, 10),
      p99_ms: p99 && Float(p99[1]) * UNITS.fetch(p99[2]),
      errors: (errors ? errors.captures.sum { |n| Integer(n, 10) } : 0) + (non2xx ? Integer(non2xx, 10) : 0)
    }
  end

  # -- the HTTP benchmark ----------------------------------------------------

  # All servers run side by side (an idle one costs nothing), and the wrk runs alternate
  # between them, in reverse order every other round, so that background load on the
  # machine hits every selector alike. The best round per selector counts.
  def http(options, names)
    cpus = pinning
    server_cpu, wrk_cpu = cpus
    mode = options.close ? "close (one request per connection)" : "keep-alive"
    puts "HTTP benchmark: GET / answered with 204, #{mode}; wrk -t1 -d#{options.duration}s --latency; " \
         "best of #{options.rounds} alternating rounds; " \
         "#{cpus ? "server on CPU #{server_cpu}, wrk on CPU #{wrk_cpu}" : 'no pinning (fewer than 2 CPUs)'}"
    failures = []
    servers = {}
    names.each do |name|
      servers[name] = start_server(name, options, server_cpu, server_time_limit(options, names.size))
      puts "  #{servers[name].banner}"
      run_wrk(servers[name].port, CONNECTIONS.last, WARMUP_SECONDS, wrk_cpu)
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
            result = run_wrk(server.port, connections, options.duration, wrk_cpu)
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

  def format_number(value, digits = 0)
    return "-" if value.nil?

    text = format("%.#{digits}f", value)
    whole, fraction = text.split(".")
    whole = whole.reverse.scan(/\d{1,3}/).join(",").reverse
    fraction ? "#{whole}.#{fraction}" : whole
  end

  def http_table(results, options)
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
    widths = headers.each_index.map { |i| ([headers[i]] + rows.map { |row| row[i] }).map(&:length).max }
    line = ->(cells) { cells.each_with_index.map { |c, i| i.zero? ? c.ljust(widths[i]) : c.rjust(widths[i]) }.join("  ") }
    puts
    puts "HTTP (#{options.close ? 'close' : 'keep-alive'}): requests/s and p99 from wrk; CPU us/request = server " \
         "utime+stime over the run / requests"
    puts line.call(headers)
    puts line.call(widths.map { |w| "-" * w })
    rows.each { |row| puts line.call(row) }
    puts "(no EPoll in this build: the vs EPoll column is empty)" if epoll.empty?
  end

  def http_target(results)
    uring = results.select { |r| r[:name] == "URing" }
    epoll = results.select { |r| r[:name] == "EPoll" }.to_h { |r| [r[:connections], r[:rps]] }
    return nil if uring.empty?
    return "target: URing req/s >= EPoll: no EPoll (n/a)" if epoll.empty?

    ratios = uring.map { |r| [r[:connections], epoll[r[:connections]] && r[:rps] / epoll[r[:connections]]] }
    met = ratios.all? { |_, ratio| ratio && ratio >= 1.0 }
    shown = ratios.map { |c, ratio| "c#{c} #{ratio ? format('%.2fx', ratio) : '-'}" }.join(", ")
    "target: URing req/s >= EPoll: #{shown} (#{met ? 'met' : 'NOT met'})"
  end

  # -- microbenchmarks ---------------------------------------------------------

  # Streams the child's output through and returns [ok, its target lines].
  def micro
    puts
    reader, writer = IO.pipe
    pid = Children.spawn(RbConfig.ruby, MICRO, out: writer, err: [:child, :out])
    writer.close
    targets = []
    deadline = now + MICRO_TIMEOUT
    buffer = read_until_eof(reader, MICRO_TIMEOUT) do |chunk|
      $stdout.write(chunk)
      $stdout.flush
    end
    buffer.each_line { |l| targets << l.strip if l.start_with?("target:") }
    status = Children.wait(pid, [deadline - now, 1].max) || Children.stop(pid, 2)
    ok = status&.success? && (deadline - now).positive?
    puts "microbenchmarks FAILED (#{status.inspect})" unless ok
    [ok, targets]
  ensure
    reader&.close
  end

  # -- main --------------------------------------------------------------------

  def main(argv)
    options = parse(argv)
    ensure_tools(options)
    available = available_selectors + ["Blocking"]
    names = SELECTOR_ORDER & available
    if options.selectors
      unknown = options.selectors - available
      raise Failure, "not available here: #{unknown.join(', ')} (available: #{available.join(', ')})" if unknown.any?

      names &= options.selectors
    end
    started = now
    puts "rake bench: ruby #{RUBY_VERSION}, linux #{File.read('/proc/sys/kernel/osrelease').strip}, " \
         "#{Etc.nprocessors} CPUs; selectors: #{names.join(', ')}"
    puts

    failures = []
    targets = []
    if options.http
      results, http_failures = http(options, names)
      failures.concat(http_failures)
      http_table(results, options) if results.any?
      targets << http_target(results)
    end
    if options.micro
      ok, micro_targets = micro
      failures << "microbenchmarks failed" unless ok
      targets.concat(micro_targets)
    end

    targets.compact!
    if targets.any?
      puts
      puts "Targets (informational, not assertions):"
      targets.each { |t| puts "  #{t.delete_prefix('target: ')}" }
    end
    puts
    puts format("total %.0fs", now - started)
    if failures.any?
      puts "FAILURES:"
      failures.each { |f| puts "  #{f}" }
      return 1
    end
    0
  rescue ArgumentError => error
    warn "run.rb: #{error.message}"
    64
  rescue Failure => error
    warn "run.rb: #{error.message}"
    1
  rescue Interrupt
    warn "\nrun.rb: interrupted; stopping everything it started"
    130
  ensure
    Children.stop_all
  end
end

exit(BenchmarkRun.main(ARGV)) if $PROGRAM_NAME == __FILE__
