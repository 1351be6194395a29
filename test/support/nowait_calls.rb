# frozen_string_literal: true

# Calls made from a fiber of their own, and what became of them: shared by
# test/soundness/nowait_attempt_test.rb and the child scripts it runs (which
# `require` this file by its path), so both judge "parked" the same way.
require "fcntl"

module NowaitCalls
  # How long a call may take to be done once started before it counts as
  # parked (it waits for something that will not come).
  PARKED_AFTER = 1

  def buffer_of(string)
    buffer = IO::Buffer.new(string.bytesize)
    buffer.set_string(string)
    buffer
  end

  def nonblock?(io)
    io.fcntl(Fcntl::F_GETFL).anybits?(File::NONBLOCK)
  end

  # Starts the block in a new fiber. Returns a lambda that drives `selector`
  # until the call is done and answers its value (an exception as a string),
  # or :parked after `timeout` seconds (PARKED_AFTER unless given); and
  # whether the call switched away (parked) before answering.
  def start_call(selector)
    value = nil
    done = false
    fiber = Fiber.new do
      value = begin
        yield
      rescue StandardError => error
        "raised #{error.class}: #{error.message}"
      end
      done = true
    end
    fiber.transfer
    parked = !done
    answer = lambda do |timeout: PARKED_AFTER|
      deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + timeout
      selector.select(0.02) until done || Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline
      done ? value : :parked
    end
    [answer, parked]
  end

  # The answer of a call that must not switch fibers (a `length == 0` call:
  # one attempt): its value, or :parked.
  def at_once(selector, &block)
    answer, parked = start_call(selector, &block)
    parked ? :parked : answer.call
  end

  # The answer of a call that may switch fibers, once it is done (or :parked).
  def completed(selector, &block)
    start_call(selector, &block).first.call
  end
end
