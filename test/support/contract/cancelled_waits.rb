# frozen_string_literal: true

require_relative "helpers"

module SelectorContract
  # io_wait ended early: an exception raised into the waiting fiber, a resume
  # by hand, its IO closed under it.
  module CancelledWaits
    include Helpers

    # --- interrupted waits --------------------------------------------------------

    def test_exception_raised_into_io_wait_leaves_no_stale_resume
      [:selector_raise, :fiber_raise].each do |how|
        input, output = pipe
        log = []
        fiber = parked_waiter(input, IO::READABLE, log)

        if how == :selector_raise
          selector.raise(fiber, Boom, "Boom")
        else
          fiber.raise(Boom, "Boom")
        end

        assert_equal 1, log.size, how
        assert_instance_of Boom, log[0][1], how
        refute selector.ready?, how

        output.write("now readable")
        3.times { assert_kind_of Integer, selector.select(0) }
        selector.select(0.01)
        assert_equal 1, log.size, "#{how}: the fiber was resumed by a cancelled wait: #{log.inspect}"
      end
    end

    def test_exception_raised_into_io_wait_one_hundred_times
      # Under GC_STRESS=1 every raise costs a full GC: fewer rounds keep the test
      # inside the watchdog while still cycling cancel and re-arm many times.
      rounds = GC.stress ? 10 : 100
      input, output = pipe
      log = []
      rescued = 0
      fiber = Fiber.new do
        rounds.times do
          begin
            log << [:returned, selector.io_wait(Fiber.current, input, IO::READABLE)]
          rescue Boom
            rescued += 1
          end
          command = main.transfer
          log << [:stale_resume, command] unless command == :again
        end
        :done
      end
      fiber.transfer

      rounds.times do |index|
        if index.even?
          selector.raise(fiber, Boom)
        else
          fiber.raise(Boom)
        end
        # The descriptor becomes (and stays) ready after the wait was cancelled.
        output.write(".")
        selector.select(0)
        fiber.transfer(:again)
      end

      assert_equal rounds, rescued
      assert_empty log
      refute fiber.alive?
      selector.select(0)
      refute selector.ready?
    end

    def test_exception_raised_into_io_wait_that_already_completed_in_the_kernel
      input, output = pipe
      log = []
      fiber = parked_waiter(input, IO::READABLE, log)
      output.write("ready before the raise")
      sleep 0.01 # let the kernel complete the wait before it is cancelled

      fiber.raise(Boom)
      assert_instance_of Boom, log[0][1]
      3.times { selector.select(0) }
      assert_equal 1, log.size, "stale resume: #{log.inspect}"
    end

    def test_fiber_raising_into_another_fiber_waiting_on_the_same_io
      [false, true].each do |swapped|
        local, _remote = socket_pair
        first_log = []
        second_log = []
        first = second = nil

        first = Fiber.new do
          begin
            first_log << [:ready, selector.io_wait(Fiber.current, local, IO::WRITABLE)]
          rescue Boom
            first_log << :rescued
            # Hand control back to the raiser, as a scheduler task would.
            value = second.transfer
            first_log << [:stale_resume, value]
          end
          stay_parked(first_log)
        end

        second = Fiber.new do
          second_log << [:ready, selector.io_wait(Fiber.current, local, IO::WRITABLE)]
          # Only raise if the selector has not already resumed the other waiter.
          if first_log.empty?
            second_log << :raising
            first.raise(Boom)
            second_log << :raised
          end
        end

        if swapped
          second.transfer
          first.transfer
        else
          first.transfer
          second.transfer
        end

        selector.select(0)
        selector.select(0.01)
        selector.select(0)

        label = "swapped=#{swapped} first=#{first_log.inspect} second=#{second_log.inspect}"
        assert_equal [:ready, IO::WRITABLE], second_log[0], label
        if second_log.include?(:raising)
          assert_equal [:rescued], first_log, label
          assert_equal [[:ready, IO::WRITABLE], :raising, :raised], second_log, label
        else
          assert_equal [[:ready, IO::WRITABLE]], first_log, label
        end
        refute second.alive?, label
      end
    end

    def test_io_wait_resumed_by_hand_returns_false_and_ignores_the_later_event
      [:resume, :push].each do |how|
        input, output = pipe
        log = []
        fiber = parked_waiter(input, IO::READABLE, log)

        if how == :resume
          selector.resume(fiber)
        else
          selector.push(fiber)
          selector.select(0)
        end
        assert_equal [[:io_wait, false]], log, how
        refute selector.ready?, how

        output.write("late event")
        selector.select(0)
        selector.select(0.01)
        selector.select(0)
        assert_equal [[:io_wait, false]], log, "#{how}: the cancelled wait resumed the fiber later"
      end
    end

    def test_io_closed_by_another_fiber_while_a_fiber_waits_on_it
      input, output = pipe
      log = []
      waiter = waiting_fiber(input, IO::READABLE, log)
      waiter.transfer

      closer = Fiber.new { input.close }
      selector.push(closer)

      # The loop must neither crash nor hang with a closed descriptor registered.
      3.times do
        result = selector.select(0.01)
        assert_kind_of Integer, result
      end
      refute closer.alive?
      output.close # the reader is gone: hang up the other end too
      assert_kind_of Integer, selector.select(0.01)

      # The waiter either received a result or an exception, or is still parked
      # (io-event leaves it parked). Cancelling a still-parked waiter must work.
      if log.empty?
        waiter.raise(Boom)
        assert_equal 1, log.size
        assert_kind_of Exception, log[0][1]
        assert_includes [Boom, IOError], log[0][1].class, "cancelling a wait on a closed IO raised #{log[0][1].inspect}"
      else
        result = log[0][1]
        assert(result.is_a?(Integer) || result == false || result.is_a?(IOError),
          "the waiter got #{result.inspect}")
      end
      assert_equal 1, log.size
      assert_kind_of Integer, selector.select(0)
      assert_equal 1, log.size, "stale resume after close: #{log.inspect}"
    end

    def test_io_closed_from_another_thread_while_selecting
      input, _output = pipe
      log = []
      waiter = waiting_fiber(input, IO::READABLE, log)
      waiter.transfer

      closer = Thread.new do
        sleep 0.01
        input.close
      end
      # As in io-event: closing the IO under a blocked select must not make
      # select raise, in this round or the next ones.
      result = selector.select(0.2)
      closer.join
      assert_kind_of Integer, result
      2.times { assert_kind_of Integer, selector.select(0.01) }

      if log.empty?
        waiter.raise(Boom)
        assert_includes [Boom, IOError], log[0][1].class, "cancelling a wait on a closed IO raised #{log[0][1].inspect}"
      end
      assert_equal 1, log.size
    ensure
      closer&.join
    end
  end
end
