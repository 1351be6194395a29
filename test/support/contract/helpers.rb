# frozen_string_literal: true

require "fiber"
require "socket"
require_relative "../selector_variants"
require_relative "../tracked_selectors"

module SelectorContract
  # What every section of the contract shares: the selector under test (its
  # loop is the test's root fiber), tracked pipes and sockets, and fibers that
  # park in io_wait and log what resumes them.
  module Helpers
    include SelectorVariants
    include SelectorDriver
    include TrackedSelectors

    # An object that is not a Fiber but quacks like one: the ready queue and
    # `resume` must accept it.
    class FakeFiber
      attr_reader :count, :arguments

      def initialize(alive = true, result = nil)
        @alive = alive
        @result = result
        @count = 0
        @arguments = []
      end

      def alive?
        @alive
      end

      def transfer(*arguments)
        @count += 1
        @arguments << arguments
        @result
      end
    end

    # Raised into waiting fibers by the tests; never raised by a selector.
    class Boom < StandardError; end

    # Generous bound for "returns promptly": far below the 1 s or forever the
    # call would otherwise take, far above scheduling noise on a loaded machine.
    PROMPT = 0.5

    # SelectorDriver builds the selector under test on the test's root fiber
    # (its loop, even when a test first touches `selector` from another fiber)
    # and closes it; `make_selector` builds more, closed by teardown too.
    def make_selector(loop)
      track(new_selector(loop))
    end

    def main
      selector.loop
    end

    # A fiber that parks in io_wait and records what io_wait returned (or raised).
    # After that it stays alive, parked by a plain transfer to the loop, and logs
    # anything that resumes it: a correct selector never does.
    def waiting_fiber(io, events, log, tag = :io_wait)
      Fiber.new do
        begin
          log << [tag, selector.io_wait(Fiber.current, io, events)]
        rescue Exception => error # rubocop:disable Lint/RescueException
          log << [tag, error]
        end
        stay_parked(log)
      end
    end

    # A waiting_fiber, entered and registered by one non-blocking select.
    def parked_waiter(io, events, log, tag = :io_wait)
      fiber = waiting_fiber(io, events, log, tag)
      fiber.transfer
      selector.select(0)
      fiber
    end

    # Parks one fiber per [io, events, tag], runs the block, selects until
    # each has answered (one more, non-blocking select if the first reported
    # only some) and returns their log sorted by tag.
    def wait_together(*waits)
      log = []
      waits.each { |io, events, tag| waiting_fiber(io, events, log, tag).transfer }
      yield if block_given?
      selector.select(1)
      selector.select(0) if log.size < waits.size
      log.sort_by { |tag, _| tag.to_s }
    end

    def stay_parked(log)
      loop_fiber = selector.loop
      # Bounded: each iteration needs an outside resume.
      1000.times { log << [:stale_resume, loop_fiber.transfer] }
    end

    # Calls `selector.wakeup` from another thread until it reports that the
    # selector was blocked (true), or until told to stop. Returns the thread;
    # its value is true when a wakeup hit a blocked select.
    def wakeup_thread(selector, stop)
      Thread.new do
        deadline = monotonic + 5
        woken = false
        until stop[0] || monotonic > deadline
          if selector.wakeup
            woken = true
            break
          end
          sleep 0.001
        end
        woken
      end
    end

    # Runs `selector.select(duration)` while another thread calls wakeup, until
    # a wakeup has hit the blocked selector. A select that returns with the
    # wakeup thread still polling ended for another reason (any signal to the
    # process may end a blocking select, as PROTOCOL.md allows, e.g. SIGCHLD from
    # a child of an earlier test): it is repeated, at most a few times.
    # Returns [woken, last select result, seconds the last select took].
    def select_until_woken(selector, duration)
      stop = [false]
      thread = wakeup_thread(selector, stop)
      result = nil
      last = nil
      5.times do
        last = elapsed { result = selector.select(duration) }
        break if thread.join(0.1)
      end
      stop[0] = true
      [thread.value, result, last]
    ensure
      stop[0] = true
      thread&.join
    end
  end
end
