# frozen_string_literal: true

# Starting and stopping the benchmark HTTP servers, and what /proc says about them.

require "etc"
require "rbconfig"
require "socket"
require "io/wait"
require_relative "children"

module BenchmarkRun
  CLOCK_TICKS = Etc.sysconf(Etc::SC_CLK_TCK)
  START_TIMEOUT = 20

  Server = Struct.new(:name, :pid, :port, :output, :banner, :drain, keyword_init: true)

  module_function

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

  # Native threads of a process now.
  def thread_count(pid)
    Dir.children("/proc/#{pid}/task").size
  rescue SystemCallError
    0
  end

  # Voluntary + non-voluntary context switches of every live thread of a process.
  def context_switches(pid)
    Dir.children("/proc/#{pid}/task").sum do |tid|
      File.foreach("/proc/#{pid}/task/#{tid}/status").sum do |line|
        line.include?("ctxt_switches:") ? Integer(line.split.last, 10) : 0
      end
    rescue SystemCallError
      0
    end
  rescue SystemCallError
    0
  end

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

  # Starts +command+ (a server that prints "listening http://127.0.0.1:PORT/ ..." first)
  # with +env+, waits for that line and one answered request.
  def start_server(name, command, env: {}, timeout: START_TIMEOUT)
    reader, writer = IO.pipe
    pid = Children.spawn(env, *command, out: writer, err: [:child, :out])
    writer.close
    server = Server.new(name: name, pid: pid, output: reader)
    banner = read_line(reader, timeout)
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
    telling = lines.grep(/\[BUG\]|Error|error|\.rb:/).first(3)
    (telling.empty? ? lines.last(2) : telling).join(" | ")[0, 600]
  end

  # Returns [exit status, the server's last words].
  def stop_server(server, grace = 5)
    status = Children.stop(server.pid, grace)
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
end
