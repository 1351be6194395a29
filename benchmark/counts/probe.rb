# frozen_string_literal: true

# One workload, run in its own process so that strace or valgrind can watch it:
#
#   ruby benchmark/counts/probe.rb WORKLOAD SELECTOR COUNT
#
# Each workload sets up, warms up with a fixed number of operations, then does COUNT
# operations and prints one JSON line: nanoseconds per operation over the COUNT
# operations (0 when COUNT is 0), and the native threads of the process before the
# setup and at the end (/proc/self/task). The measuring side runs it with COUNT = 0 and
# COUNT = N and divides the difference by N, so start-up, loading and warm-up cancel out.
#
# Workloads (an operation is):
#   select_zero      one select(0) with nothing pending, in a plain `while` loop
#   wakeup           one wakeup while the selector is not blocked (answers false)
#   ping_pong_rw     one round trip of a 1-byte message between two fibers over a
#                    socketpair, with the selector's io_write/io_read
#   ping_pong_wait   the same with non-blocking reads and writes that call io_wait when
#                    they would block (what Ruby's IO does under a fiber scheduler)
#   blocking_select  one select(0.0005) with nothing pending: it blocks for the duration
#
# IO_EVENT_BENCH_SO picks the build of the extension (see benchmark/build.rb).

Warning[:experimental] = false

require_relative "../build"
require "io/event"
require "json"
require "socket"

module BenchProbe
  WARMUP = 200
  # A ping-pong that has not finished by then lost a wake-up (callgrind included).
  STALL_SECONDS = 240

  module_function

  def threads
    Dir.children("/proc/self/task").size
  end

  def now_ns
    Process.clock_gettime(Process::CLOCK_MONOTONIC, :nanosecond)
  end

  def select_zero(selector, count)
    i = 0
    while i < count
      selector.select(0)
      i += 1
    end
  end

  def wakeup(selector, count)
    i = 0
    while i < count
      selector.wakeup
      i += 1
    end
  end

  def blocking_select(selector, count)
    i = 0
    while i < count
      selector.select(0.0005)
      i += 1
    end
  end

  # Two fibers bounce one byte +count+ times; the main fiber runs the loop. Returns a
  # lambda that does +count+ round trips.
  def ping_pong(selector, mode)
    left, right = UNIXSocket.pair
    runner = mode == :rw ? method(:rw_side) : method(:wait_side)
    lambda do |count|
      return if count.zero?

      done = 0
      serve = Fiber.new { runner.call(selector, right, count, false) }
      ping = Fiber.new { runner.call(selector, left, count, true); done = 1 }
      selector.push(serve)
      selector.push(ping)
      give_up = now_ns + STALL_SECONDS * 1_000_000_000
      turns = 0
      while done.zero? || serve.alive?
        selector.select(done.zero? ? 1 : 0)
        # The clock is read every 4096 turns only, so that it costs next to nothing.
        turns += 1
        next unless (turns & 4095).zero? && now_ns > give_up

        raise "ping-pong stalled: no progress for #{STALL_SECONDS}s (a lost wake-up?)"
      end
    end
  end

  def rw_side(selector, socket, count, starts)
    fiber = Fiber.current
    buffer = IO::Buffer.new(1)
    count.times do
      if starts
        expect(selector.io_write(fiber, socket, buffer, 1), "io_write")
        expect(selector.io_read(fiber, socket, buffer, 1), "io_read")
      else
        expect(selector.io_read(fiber, socket, buffer, 1), "io_read")
        expect(selector.io_write(fiber, socket, buffer, 1), "io_write")
      end
    end
  end

  def wait_side(selector, socket, count, starts)
    fiber = Fiber.current
    message = "x"
    buffer = String.new(capacity: 16)
    count.times do
      if starts
        send_byte(selector, fiber, socket, message)
        receive_byte(selector, fiber, socket, buffer)
      else
        receive_byte(selector, fiber, socket, buffer)
        send_byte(selector, fiber, socket, message)
      end
    end
  end

  def receive_byte(selector, fiber, socket, buffer)
    loop do
      result = socket.read_nonblock(1, buffer, exception: false)
      return if result.is_a?(String)
      raise EOFError, "peer closed" if result.nil?

      selector.io_wait(fiber, socket, IO::READABLE)
    end
  end

  def send_byte(selector, fiber, socket, message)
    loop do
      return if socket.write_nonblock(message, exception: false) == 1

      selector.io_wait(fiber, socket, IO::WRITABLE)
    end
  end

  def expect(result, what)
    raise "#{what} returned #{result.inspect}, expected 1" unless result == 1
  end

  def workload(name, selector)
    case name
    when "select_zero" then ->(count) { select_zero(selector, count) }
    when "wakeup" then ->(count) { wakeup(selector, count) }
    when "blocking_select" then ->(count) { blocking_select(selector, count) }
    when "ping_pong_rw" then ping_pong(selector, :rw)
    when "ping_pong_wait" then ping_pong(selector, :wait)
    else raise ArgumentError, "unknown workload #{name}"
    end
  end

  def main(argv)
    name, selector_name, count = argv
    count = Integer(count, 10)
    before = threads
    selector = IO::Event::Selector.const_get(selector_name).new(Fiber.current)
    run = workload(name, selector)
    run.call(name == "blocking_select" ? 2 : WARMUP)
    started = now_ns
    run.call(count)
    elapsed = now_ns - started
    after = threads
    selector.close
    $stdout.puts JSON.generate(ns_per_op: count.zero? ? 0 : elapsed.fdiv(count),
                               threads_before: before, threads_after: after, so: BenchBuild.loaded_so)
  end
end

BenchProbe.main(ARGV) if $PROGRAM_NAME == __FILE__
