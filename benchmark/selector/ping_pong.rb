# frozen_string_literal: true

# Fiber ping-pong through two pipes, calling the selector's io_read and io_write
# directly (no scheduler in between): fiber A writes a message into pipe 1 and reads the
# answer from pipe 2; fiber B reads from pipe 1 and writes the message back into pipe 2.
# The main fiber is the event loop and only calls select. Reported in messages per
# second (each one-way message counts once; a round trip is two), for 1-byte and
# 16 KiB messages: the best of a few short rounds.
#
# Baseline row: the same exchange between two threads doing blocking reads and writes.
#
#   ruby benchmark/selector/ping_pong.rb

require_relative "support"

module SelectorBench
  module PingPong
    SIZES = [1, 16 * 1024].freeze
    ROUNDS = 3
    SECONDS = 0.25
    # The exchange must have finished by then, or the selector lost a wake-up.
    STALL = 5.0
    BASELINE_NAME = "threads + blocking IO"

    class Failure < StandardError; end

    module_function

    def check(result, expected, what)
      return if result == expected

      raise Failure, "#{what} returned #{result.inspect}, expected #{expected}"
    end

    def measure_selector(klass, size)
      selector = klass.new(Fiber.current)
      unless selector.respond_to?(:io_read) && selector.respond_to?(:io_write)
        return { error: "no io_read/io_write" }
      end

      ping_reader, ping_writer = IO.pipe
      pong_reader, pong_writer = IO.pipe
      messages = 0
      failure = nil
      finish_at = nil

      # The first byte of every message says whether it is the last one.
      ping = Fiber.new do
        fiber = Fiber.current
        buffer = IO::Buffer.new(size)
        turn = 0
        loop do
          last = (turn & 63).zero? && SelectorBench.now >= finish_at ? 1 : 0
          buffer.set_value(:U8, 0, last)
          check(selector.io_write(fiber, ping_writer, buffer, size), size, "io_write")
          check(selector.io_read(fiber, pong_reader, buffer, size), size, "io_read")
          messages += 2
          turn += 1
          break if last == 1
        end
      rescue Failure, SystemCallError, IOError => error
        failure = error
      end

      pong = Fiber.new do
        fiber = Fiber.current
        buffer = IO::Buffer.new(size)
        loop do
          check(selector.io_read(fiber, ping_reader, buffer, size), size, "io_read")
          last = buffer.get_value(:U8, 0)
          check(selector.io_write(fiber, pong_writer, buffer, size), size, "io_write")
          break if last == 1
        end
      rescue Failure, SystemCallError, IOError => error
        failure = error
      end

      started = SelectorBench.now
      finish_at = started + SECONDS
      selector.push(pong)
      selector.push(ping)
      selector.select(0.1) while (ping.alive? || pong.alive?) && failure.nil? && SelectorBench.now < started + STALL
      elapsed = SelectorBench.now - started
      return { error: failure.message } if failure
      return { error: "stalled: no progress after #{STALL}s (#{messages} messages)" } if ping.alive? || pong.alive?

      { per_second: messages / elapsed }
    ensure
      # Closing the pipes wakes nothing that is still parked; closing the selector
      # cancels whatever is still in flight before the pipes go.
      selector&.close
      [ping_reader, ping_writer, pong_reader, pong_writer].each { |io| io&.close }
    end

    def measure_threads(size)
      ping_reader, ping_writer = IO.pipe
      pong_reader, pong_writer = IO.pipe
      stop = "\x01".b * size
      echo = Thread.new do
        buffer = String.new(capacity: size)
        loop do
          ping_reader.read(size, buffer)
          pong_writer.write(buffer)
          break if buffer.getbyte(0) == 1
        end
      end
      message = "\x00".b * size
      answer = String.new(capacity: size)
      messages = 0
      started = SelectorBench.now
      finish_at = started + SECONDS
      turn = 0
      loop do
        last = (turn & 63).zero? && SelectorBench.now >= finish_at
        ping_writer.write(last ? stop : message)
        pong_reader.read(size, answer)
        messages += 2
        turn += 1
        break if last
      end
      elapsed = SelectorBench.now - started
      echo.join(1)
      { per_second: messages / elapsed }
    ensure
      echo&.kill
      [ping_reader, ping_writer, pong_reader, pong_writer].each { |io| io&.close }
    end

    # Several short rounds, alternating between selectors so that each sees the same
    # background load; the best round counts (interference only ever slows a round).
    def run
      runners = SelectorBench.selectors.map do |name, klass|
        [name, ->(size) { SelectorBench.isolated { measure_selector(klass, size) } }]
      end
      runners << [BASELINE_NAME, ->(size) { SelectorBench.isolated { measure_threads(size) } }]
      results = runners.to_h { |name, _| [name, {}] }
      ROUNDS.times do
        SIZES.each do |size|
          runners.each do |name, runner|
            previous = results[name][size]
            next if previous&.key?(:error)

            result = runner.call(size)
            if previous.nil? || result[:error] || result[:per_second] > previous[:per_second]
              results[name][size] = result
            end
          end
        end
      end
      results
    end

    def label(size)
      size >= 1024 ? "#{size / 1024} KiB" : "#{size} B"
    end

    def report(results)
      base = SelectorBench.baseline_name(results.keys)
      headers = ["selector"]
      SIZES.each { |size| headers.push("#{label(size)} msg/s", "vs #{base || '-'}") }
      rows = results.map do |name, by_size|
        row = [name]
        SIZES.each do |size|
          result = by_size[size]
          if result[:error]
            row.push("failed: #{result[:error]}", "")
          else
            row.push(SelectorBench.number(result[:per_second]),
                     SelectorBench.ratio(result[:per_second], base && results.dig(base, size, :per_second)))
          end
        end
        row
      end
      text = SelectorBench.table("fiber ping-pong through pipes with io_read/io_write on the selector " \
                                 "(one-way messages per second)", headers, rows)
      uring = results["URing"]
      epoll = results["EPoll"]
      if uring
        parts = SIZES.map do |size|
          u = uring.dig(size, :per_second)
          e = epoll&.dig(size, :per_second)
          ratio = u && e ? u.fdiv(e) : nil
          [label(size), ratio]
        end
        shown = parts.map { |lbl, ratio| "#{lbl} #{ratio ? format('%.2fx', ratio) : (epoll ? 'failed' : 'no EPoll')}" }
        met = parts.all? { |_, ratio| ratio } ? parts.all? { |_, ratio| ratio >= 1.0 } : nil
        text += "\ntarget: URing ping-pong >= EPoll: #{shown.join(', ')} (#{SelectorBench.verdict(met)})"
      end
      text
    end
  end
end

puts SelectorBench::PingPong.report(SelectorBench::PingPong.run) if $PROGRAM_NAME == __FILE__
