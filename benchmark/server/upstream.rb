#!/usr/bin/env ruby
# frozen_string_literal: true

# The connection-per-request HTTP server, in the style of io-event's own
# benchmark/server/event.rb, so that its figures compare with the C extension's:
# a minimal fiber scheduler whose only I/O hook is io_wait (Ruby itself does the
# non-blocking reads and writes and calls io_wait when they would block), one fiber
# per connection that reads the request once, answers 204 with "Connection: close" and
# closes. No threads: the server process has exactly the native threads that Ruby and
# the selector make, so their count and the context switches are the selector's.
#
#   ruby benchmark/server/upstream.rb [PORT] [SECONDS]
#
# PORT     0 (the default) picks a free port of 127.0.0.1.
# SECONDS  stop after this long (default 600); SIGINT and SIGTERM stop it too.
# IO_EVENT_SELECTOR picks the selector; IO_EVENT_BENCH_SO the build (benchmark/build.rb).
#
# Prints "listening http://127.0.0.1:PORT/ selector=NAME mode=close pid=PID" when
# ready and "stopped selector=NAME requests=N" at the end.

require_relative "../build"
require "io/event"
require "socket"

Warning[:experimental] = false

module UpstreamServer
  RESPONSE = "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"

  # Only the hooks the server needs: io_wait, io_close where the selector has it,
  # kernel_sleep as a yield, and running the loop on close.
  class Scheduler
    def initialize(selector, deadline)
      @selector = selector
      @deadline = deadline
      @waiting = 0
      @stop = false
      singleton_class.send(:undef_method, :io_close) unless selector.respond_to?(:io_close)
    end

    attr_writer :stop

    def io_wait(io, events, _timeout)
      @waiting += 1
      @selector.io_wait(Fiber.current, io, events)
    ensure
      @waiting -= 1
    end

    def io_close(descriptor)
      @selector.io_close(descriptor)
    end

    def kernel_sleep(_duration = nil)
      @selector.yield
    end

    def block(_blocker, _timeout)
      raise NotImplementedError, "the benchmark server never blocks on a Mutex or Queue"
    end

    def unblock(_blocker, _fiber)
      raise NotImplementedError, "the benchmark server never blocks on a Mutex or Queue"
    end

    def fiber(&block)
      fiber = Fiber.new(blocking: false, &block)
      @selector.resume(fiber)
      fiber
    end

    # Runs the loop until stopped (a signal, or the deadline): at Fiber.set_scheduler(nil).
    def close
      until @stop
        remaining = @deadline - Process.clock_gettime(Process::CLOCK_MONOTONIC)
        break if remaining <= 0

        @selector.select(@selector.ready? ? 0 : remaining)
      end
    end
  end

  module_function

  def run(port, seconds)
    selector = IO::Event::Selector.new(Fiber.current)
    name = selector.class.name.split("::").last
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + seconds
    scheduler = Scheduler.new(selector, deadline)
    %w[INT TERM].each { |signal| trap(signal) { scheduler.stop = true } }
    server = TCPServer.new("127.0.0.1", port)
    requests = 0
    $stdout.puts "listening http://127.0.0.1:#{server.local_address.ip_port}/ selector=#{name} mode=close " \
                 "pid=#{Process.pid}"
    $stdout.flush

    Fiber.set_scheduler(scheduler)
    Fiber.schedule do
      loop do
        peer = server.accept
        Fiber.schedule do
          begin
            peer.readpartial(1024)
            peer.write(RESPONSE)
            requests += 1
          rescue EOFError, SystemCallError, IOError
            nil
          end
          peer.close
        end
      end
    end
    Fiber.set_scheduler(nil)
    $stdout.puts "stopped selector=#{name} requests=#{requests}"
    $stdout.flush
  end
end

if $PROGRAM_NAME == __FILE__
  port = Integer(ARGV[0] || "0", 10)
  seconds = Float(ARGV[1] || "600")
  UpstreamServer.run(port, seconds)
  # Fibers still parked in accept or a read are abandoned, not run to the end.
  exit!(0)
end
