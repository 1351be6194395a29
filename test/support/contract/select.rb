# frozen_string_literal: true

require_relative "helpers"

module SelectorContract
  # select's durations and results, wakeup from another thread, and what ends
  # a blocking select (Thread#raise, Thread#kill, a trapped signal).
  module Select
    include Helpers

    # --- select -----------------------------------------------------------------

    def test_select_zero_returns_integer_without_blocking
      result = nil
      duration = elapsed { result = selector.select(0) }
      assert_kind_of Integer, result
      assert_equal 0, result, "nothing was pending, so no event was handled"
      assert_operator duration, :<, PROMPT

      assert_kind_of Integer, selector.select(0.0)
    end

    # Two fibers that keep answering each other (each write makes the other's
    # read ready at once) must not hold the loop inside one select: what
    # they make ready waits for the next select, so the event loop gets its
    # turn (timers, other fibers, its own checks). URing once resumed them
    # for as long as they went on: its inline write reaps the peer's read.
    def test_select_returns_while_two_fibers_keep_answering_each_other
      left, right = UNIXSocket.pair
      # GC_STRESS=1 makes every allocation collect: fewer rounds still show a
      # held loop (the first select would resume them about 2 * rounds times).
      rounds = scaled(1000, 20)
      done = 0
      bounce = lambda do |io, starts|
        fiber = Fiber.current
        buffer = IO::Buffer.new(1)
        send = lambda do
          if selector.respond_to?(:io_write)
            selector.io_write(fiber, io, buffer, 1)
          else
            io.write_nonblock("x")
          end
        end
        receive = lambda do
          if selector.respond_to?(:io_read)
            selector.io_read(fiber, io, buffer, 1)
          else
            selector.io_wait(fiber, io, IO::READABLE) while io.read_nonblock(1, exception: false) == :wait_readable
          end
        end
        send.call if starts
        rounds.times do
          receive.call
          send.call
        end
        done += 1
      end
      Fiber.new { bounce.call(left, false) }.transfer
      Fiber.new { bounce.call(right, true) }.transfer
      first = selector.select(1)
      assert_operator first, :<=, 2, "one select resumed the fibers #{first} times: they held the loop"
      selects = 1
      selects += 1 while done < 2 && selector.select(1) && selects < rounds * 8
      assert_equal 2, done, "the fibers did not finish in #{selects} selects"
    ensure
      left&.close
      right&.close
    end

    def test_select_short_timeout_waits_roughly_that_long
      # Any signal to the process may end a blocking select early (PROTOCOL.md),
      # e.g. SIGCHLD from a child of an earlier test, so the lower bound must
      # hold for one of a few attempts, not for each.
      durations = 3.times.map do
        result = nil
        duration = elapsed { result = selector.select(0.05) }
        assert_kind_of Integer, result
        assert_equal 0, result
        assert_operator duration, :<, 5
        duration
      end
      assert_operator durations.max, :>=, 0.03, "select(0.05) with nothing to do returned too early: #{durations.inspect}"

      # An Integer duration is accepted too.
      assert_kind_of Integer, selector.select(0)
    end

    def test_select_invalid_duration_raises_type_error
      assert_raises(TypeError) { selector.select("invalid") }
      assert_raises(TypeError) { selector.select(Object.new) }
      assert_raises(TypeError) { selector.select(:soon) }

      # The selector is still usable.
      assert_kind_of Integer, selector.select(0)
    end

    def test_idle_duration
      assert_kind_of Float, selector.idle_duration

      3.times do
        selector.select(0.005)
        idle = selector.idle_duration
        assert_kind_of Float, idle
        assert_operator idle, :>, 0.0, "a select that blocked reports a positive idle duration"

        selector.select(0)
        assert_equal 0.0, selector.idle_duration, "a non-blocking select reports 0.0"
      end
    end

    def test_idle_duration_is_zero_when_ready_queue_prevents_blocking
      selector.select(0.005)
      assert_operator selector.idle_duration, :>, 0.0

      selector.push(FakeFiber.new)
      selector.select(1)
      assert_equal 0.0, selector.idle_duration
    end

    # --- wakeup -----------------------------------------------------------------

    def test_wakeup_from_another_thread_ends_blocking_select
      woken, result, duration = select_until_woken(selector, nil)
      assert_equal true, woken, "wakeup never reported a blocked selector"
      assert_kind_of Integer, result
      assert_operator duration, :<, 5
    end

    def test_wakeup_twice_in_a_row
      2.times do |iteration|
        woken, result, duration = select_until_woken(selector, nil)
        assert_equal true, woken, "wakeup #{iteration + 1} never reported a blocked selector"
        assert_kind_of Integer, result
        assert_operator duration, :<, 5
      end
    end

    def test_wakeup_with_timeout_returns_before_timeout
      woken, result, duration = select_until_woken(selector, 3)
      assert_equal true, woken
      assert_kind_of Integer, result
      assert_operator duration, :<, 2.5
    end

    def test_wakeup_when_not_selecting_returns_false
      assert_equal false, selector.wakeup
      selector.select(0)
      assert_equal false, selector.wakeup
      selector.select(0.001)
      assert_equal false, selector.wakeup
    end

    # --- interruption -----------------------------------------------------------

    def run_select_nil_in_thread(with_waiter:)
      ready = Queue.new
      result = []
      thread = Thread.new do
        Thread.current.report_on_exception = false
        own = new_selector(Fiber.current)
        input, output = IO.pipe
        begin
          if with_waiter
            Fiber.new { own.io_wait(Fiber.current, input, IO::READABLE) }.transfer
          end
          ready << true
          result << own.select(nil)
        ensure
          own.close
          input.close
          output.close
        end
      end
      ready.pop
      deadline = monotonic + 5
      sleep 0.001 until thread.status == "sleep" || !thread.alive? || monotonic > deadline
      sleep 0.02
      [thread, result]
    end

    def test_thread_raise_ends_a_blocking_select
      [false, true].each do |with_waiter|
        thread, result = run_select_nil_in_thread(with_waiter: with_waiter)
        assert thread.alive?, "select(nil) returned on its own: #{result.inspect}"

        duration = elapsed do
          thread.raise(Boom, "interrupt")
          error = assert_raises(Boom) { thread.join(5) || flunk("Thread#raise did not end select(nil)") }
          assert_equal "interrupt", error.message
        end
        assert_operator duration, :<, 2, "with_waiter=#{with_waiter}"
      ensure
        if thread&.alive?
          thread.kill
          thread.join(1)
        end
      end
    end

    def test_thread_kill_ends_a_blocking_select
      thread, = run_select_nil_in_thread(with_waiter: true)
      assert thread.alive?
      thread.kill
      assert thread.join(5), "Thread#kill did not end select(nil)"
    end

    def test_trapped_signal_ends_a_blocking_select
      trapped = 0
      previous = trap("USR2") { trapped += 1 }
      main_thread = Thread.current
      done = false
      rescued_by_wakeup = false

      sender = Thread.new do
        deadline = monotonic + 3
        sleep 0.001 until done || main_thread.status == "sleep" || monotonic > deadline
        # Repeat in case the first signal lands just before select blocks.
        until done || monotonic > deadline
          Process.kill("USR2", Process.pid)
          sleep 0.1
        end
        # The signal did not end the select: end it another way so the test
        # fails with a message instead of hanging until the watchdog fires.
        until done || monotonic > deadline + 2
          rescued_by_wakeup = true if selector.wakeup
          sleep 0.01
        end
      end

      result = nil
      duration = elapsed { result = selector.select(nil) }
      done = true
      deadline = monotonic + 1
      sleep 0.001 while trapped.zero? && monotonic < deadline

      refute rescued_by_wakeup, "a trapped signal did not end select(nil) (it took #{duration.round(2)}s and a wakeup)"
      assert_kind_of Integer, result
      assert_operator duration, :<, 2.5
      assert_operator trapped, :>=, 1, "the trap handler did not run"
    ensure
      done = true
      sender&.join
      trap("USR2", previous || "DEFAULT")
    end
  end
end
