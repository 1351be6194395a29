#!/usr/bin/env ruby
# frozen_string_literal: true

# The HTTP server that `rake bench` drives with wrk.
#
#   ruby benchmark/server/event.rb [PORT] [SECONDS] [--close] [--blocking]
#
# PORT     defaults to 9090; 0 picks a free port. Binds 127.0.0.1 only.
# SECONDS  stop after this long (also IO_EVENT_BENCH_TIME_LIMIT); default: run until
#          SIGINT or SIGTERM.
# --close  answer one request per connection and close it (HTTP/1.0 style). The default
#          keeps connections alive, as wrk speaks HTTP/1.1: closing each time would make
#          wrk measure connect() and accept() rather than the event loop.
# --blocking, or IO_EVENT_SELECTOR=Blocking: the baseline, one Thread per connection and
#          plain blocking Ruby IO, no fiber scheduler at all.
#
# Otherwise every connection is a fiber under the test scheduler, on the selector that
# IO::Event::Selector.new picks (IO_EVENT_SELECTOR=URing, EPoll or Select to choose).
#
# Prints one line when it listens and one when it stops, both on stdout:
#   listening http://127.0.0.1:PORT/ selector=URing mode=keep-alive pid=PID
#   stopped selector=URing mode=keep-alive requests=N connections=N seconds=S

require "socket"

module BenchmarkServer
  KEEP_ALIVE_RESPONSE = "HTTP/1.1 204 No Content\r\nConnection: keep-alive\r\n\r\n"
  CLOSE_RESPONSE = "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"
  TERMINATOR = "\r\n\r\n"
  # A request that grows past this without a blank line is dropped.
  MAX_REQUEST = 16 * 1024
  # After a stop request, how long connections get to finish before the process exits anyway.
  GRACE_SECONDS = 5
  # IO_EVENT_BENCH_DEBUG=1 logs connections that end with an error rather than EOF.
  DEBUG = ENV["IO_EVENT_BENCH_DEBUG"] == "1"

  Options = Struct.new(:port, :time_limit, :close, :blocking, keyword_init: true)

  module_function

  def parse(argv, env)
    args = argv.dup
    close = !args.delete("--close").nil?
    blocking = !args.delete("--blocking").nil? || env["IO_EVENT_SELECTOR"] == "Blocking"
    unknown = args.grep(/\A-/)
    raise ArgumentError, "unknown option #{unknown.first} (known: --close, --blocking)" if unknown.any?
    raise ArgumentError, "too many arguments: #{args.inspect}" if args.size > 2

    port = Integer(args[0] || "9090", 10)
    raise ArgumentError, "port #{port} out of range" unless (0..65_535).cover?(port)

    limit = args[1] || env["IO_EVENT_BENCH_TIME_LIMIT"]
    limit = limit && Float(limit)
    raise ArgumentError, "time limit must be positive" if limit && limit <= 0

    Options.new(port: port, time_limit: limit, close: close, blocking: blocking)
  end

  # Reads requests from +peer+ and answers each with 204 until EOF (or after the first
  # one in close mode). Handles pipelined requests. Returns the number answered.
  def serve(peer, close_mode)
    response = close_mode ? CLOSE_RESPONSE : KEEP_ALIVE_RESPONSE
    pending = String.new(capacity: 4096)
    chunk = String.new(capacity: 4096)
    answered = 0
    loop do
      peer.readpartial(4096, chunk)
      pending << chunk
      count = 0
      start = 0
      while (index = pending.index(TERMINATOR, start))
        count += 1
        start = index + TERMINATOR.bytesize
      end
      if count.zero?
        return answered if pending.bytesize > MAX_REQUEST
        next
      end
      if start == pending.bytesize
        pending.clear
      else
        pending = pending.byteslice(start, pending.bytesize - start)
      end
      if close_mode
        peer.write(response)
        return answered + 1
      end
      peer.write(count == 1 ? response : response * count)
      answered += count
    end
  rescue EOFError
    answered
  rescue Errno::ECONNRESET, Errno::EPIPE, IOError => error
    warn "event.rb: connection ended by #{error.class}: #{error.message}\n  #{error.backtrace.first(6).join("\n  ")}" if DEBUG
    answered
  end

  # Shared bookkeeping for both modes: open connections (so a stop can wake them) and
  # counters. The lock matters in thread mode; in fiber mode it is never contended.
  class State
    attr_reader :requests, :connections

    def initialize
      @peers = {}
      @requests = 0
      @connections = 0
      @stopping = false
      @lock = Mutex.new
    end

    def stopping?
      @stopping
    end

    def opened(peer)
      @lock.synchronize do
        @connections += 1
        @peers[peer] = true
      end
    end

    def closed(peer, answered)
      @lock.synchronize do
        @requests += answered
        @peers.delete(peer)
      end
    end

    # Stop accepting and wake every connection: shutdown (not close) makes a pending read
    # or poll on the socket complete, with EOF, in every selector, in the kernel's own
    # time; close would leave a poll or read that holds a file reference parked.
    def stop(server)
      peers = @lock.synchronize do
        @stopping = true
        @peers.keys
      end
      shutdown(server)
      peers.each { |peer| shutdown(peer) }
    end

    def shutdown(socket)
      socket.shutdown(Socket::SHUT_RDWR)
    rescue IOError, SystemCallError
      nil
    end
  end

  def run(options)
    server = TCPServer.new("127.0.0.1", options.port)
    selector = options.blocking ? "Blocking" : nil
    stop_reader, stop_writer = IO.pipe
    %w[INT TERM].each do |signal|
      # A trap handler may run on any fiber of the main thread; it only pokes the pipe.
      trap(signal) { stop_writer.write_nonblock(".", exception: false) }
    end
    if options.time_limit
      Thread.new do
        sleep options.time_limit
        stop_writer.write_nonblock(".", exception: false)
      end
    end

    state = State.new
    started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    mode = options.close ? "close" : "keep-alive"
    announce = lambda do |name|
      port = server.local_address.ip_port
      $stdout.puts "listening http://127.0.0.1:#{port}/ selector=#{name} mode=#{mode} pid=#{Process.pid}"
      $stdout.flush
    end

    if options.blocking
      announce.call(selector)
      run_threads(server, stop_reader, state, options)
    else
      selector = run_fibers(server, stop_reader, state, options, announce)
    end

    elapsed = Process.clock_gettime(Process::CLOCK_MONOTONIC) - started
    $stdout.puts format("stopped selector=%s mode=%s requests=%d connections=%d seconds=%.1f",
                        selector, mode, state.requests, state.connections, elapsed)
    $stdout.flush
  ensure
    server&.close unless server&.closed?
  end

  # Baseline: plain blocking Ruby, one thread per connection.
  def run_threads(server, stop_reader, state, options)
    stopper = Thread.new do
      stop_reader.read(1)
      state.stop(server)
    end
    threads = []
    until state.stopping?
      begin
        peer = server.accept
      rescue IOError, SystemCallError
        break if state.stopping?

        raise
      end
      state.opened(peer)
      threads << Thread.new(peer) do |socket|
        answered = serve(socket, options.close)
        state.closed(socket, answered)
        socket.close
      end
      threads.select!(&:alive?) if threads.size > 1024
    end
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + GRACE_SECONDS
    threads.each do |thread|
      thread.join([deadline - Process.clock_gettime(Process::CLOCK_MONOTONIC), 0].max)
    end
    stopper.join
  end

  # One fiber per connection under the shared test scheduler.
  def run_fibers(server, stop_reader, state, options, announce)
    require_relative "scheduler"

    on_error = ->(error) { warn "event.rb: #{error.class}: #{error.message}" }
    scheduler = IOEventTestScheduler.new(on_error: on_error)
    name = scheduler.selector.class.name.split("::").last
    announce.call(name)

    # If a stopped loop still has fibers that will never finish, do not hang forever.
    stopped = Thread::Queue.new
    watchdog = Thread.new do
      stopped.pop
      sleep GRACE_SECONDS
      warn "event.rb: connections still open #{GRACE_SECONDS}s after stop; exiting"
      $stdout.flush
      exit!(2)
    end

    Fiber.set_scheduler(scheduler)
    Fiber.schedule do
      stop_reader.read(1)
      state.stop(server)
      stopped.push(true)
    end
    Fiber.schedule do
      until state.stopping?
        begin
          peer = server.accept
        rescue IOError, SystemCallError
          break if state.stopping?

          raise
        end
        state.opened(peer)
        # Pass the socket in: a block-local `peer` would be the acceptor's variable,
        # reassigned by the next accept.
        Fiber.schedule(peer) do |socket|
          answered = serve(socket, options.close)
          state.closed(socket, answered)
          socket.close
        end
      end
    end
    # Runs the loop until every fiber has finished.
    Fiber.set_scheduler(nil)
    watchdog.kill
    name
  end
end

if $PROGRAM_NAME == __FILE__
  begin
    options = BenchmarkServer.parse(ARGV, ENV)
  rescue ArgumentError => error
    warn "event.rb: #{error.message}"
    warn "usage: ruby benchmark/server/event.rb [PORT] [SECONDS] [--close] [--blocking]"
    exit 64
  end
  BenchmarkServer.run(options)
end
