# frozen_string_literal: true

require_relative "helpers"

module SelectorContract
  # The ready queue (loop, ready?, push) and the fiber switches (transfer,
  # resume, yield, raise).
  module Fibers
    include Helpers

    # --- loop, ready?, push -----------------------------------------------------

    def test_loop_is_the_loop_fiber
      assert_same Fiber.current, selector.loop
    end

    def test_ready_reflects_the_ready_queue
      refute selector.ready?
      selector.push(Fiber.new {})
      assert selector.ready?
      selector.select(0)
      refute selector.ready?
    end

    def test_pushed_fiber_runs_at_next_select_and_select_does_not_block
      log = []
      fiber = Fiber.new { log << :ran }
      selector.push(fiber)
      assert_empty log, "push must not run the fiber"

      duration = elapsed { assert_kind_of Integer, selector.select(1) }
      assert_equal [:ran], log
      assert_operator duration, :<, PROMPT, "select blocked although the ready queue was not empty"
      refute selector.ready?
    end

    def test_ready_queue_runs_in_fifo_order
      log = []
      fibers = 5.times.map { |index| Fiber.new { log << index } }
      fibers.each { |fiber| selector.push(fiber) }
      selector.select(0)
      assert_equal [0, 1, 2, 3, 4], log
    end

    def test_readying_another_fiber_does_not_block
      log = []
      second = Fiber.new { log << :second }
      first = Fiber.new do
        log << :first
        selector.push(second)
      end
      selector.push(first)

      duration = elapsed { selector.select(1) }
      assert_operator duration, :<, PROMPT, "a fiber pushed during select must keep select from blocking"
      assert_equal [:first], log, "a fiber pushed while the queue is flushed waits for the next select"
      assert selector.ready?

      duration = elapsed { selector.select(1) }
      assert_operator duration, :<, PROMPT
      assert_equal [:first, :second], log
      refute selector.ready?
    end

    def test_yield_during_flush_defers_to_next_select
      log = []
      fiber = yielding_fiber(log)
      selector.push(fiber)

      log << :select1
      selector.select(0)
      log << :select2
      selector.select(0)

      assert_equal [:select1, :yield, :select2, :resumed], log
    end

    def test_pushing_repeatedly_from_a_fiber_does_not_starve_the_loop
      count = 0
      fiber = Fiber.new do
        100.times do
          count += 1
          selector.yield
        end
      end
      selector.push(fiber)
      10.times { selector.select(0) }
      assert_equal 10, count, "each select runs the queue once only"
    end

    def test_dead_fibers_in_the_queue_are_skipped
      dead = Fiber.new {}
      dead.transfer
      refute dead.alive?

      log = []
      live = Fiber.new { log << :live }
      fake_dead = FakeFiber.new(false)

      selector.push(dead)
      selector.push(fake_dead)
      selector.push(live)

      assert_kind_of Integer, selector.select(0)
      assert_equal [:live], log
      assert_equal 0, fake_dead.count, "a dead entry must not be transferred to"
      refute selector.ready?
    end

    def test_push_accepts_a_non_fiber_object
      fake = FakeFiber.new
      selector.push(fake)
      assert selector.ready?
      selector.select(0)
      assert_equal 1, fake.count
      refute selector.ready?
    end

    # --- transfer, resume, yield, raise -----------------------------------------

    # Logs :yield, yields to the selector, logs :resumed.
    def yielding_fiber(log)
      Fiber.new do
        log << :yield
        selector.yield
        log << :resumed
      end
    end

    def test_transfer_on_the_loop_fiber_returns_nil
      assert_nil selector.transfer
      refute selector.ready?
    end

    def test_transfer_from_a_fiber_returns_what_the_loop_sends
      log = []
      fiber = Fiber.new do
        log << selector.transfer
        log << selector.transfer
      end
      fiber.transfer
      assert_empty log
      fiber.transfer(:first)
      assert_equal [:first], log
      fiber.transfer(:second)
      assert_equal [:first, :second], log
      refute fiber.alive?
    end

    def test_resume_passes_arguments_and_returns_what_the_target_transfers_back
      fiber = Fiber.new do |a, b|
        main.transfer([:got, a, b])
      end
      result = selector.resume(fiber, 1, 2)
      assert_equal [:got, 1, 2], result
      refute selector.ready?, "the caller's ready-queue entry must be removed once resume returns"
      # Running the queue must not try to transfer to the loop fiber itself.
      assert_kind_of Integer, selector.select(0)
    end

    def test_resume_many_fibers
      count = 0
      5.times { selector.resume(Fiber.new { count += 1 }) }
      assert_equal 5, count
      refute selector.ready?
    end

    def test_resume_from_the_main_fiber_then_select
      log = []
      fiber = Fiber.new { |argument| log << argument }
      selector.resume(fiber, :resumed)
      log << :select
      selector.select(0)
      assert_equal [:resumed, :select], log
    end

    def test_resume_from_a_nested_fiber_requeues_the_caller
      log = []
      child = Fiber.new { |argument| log << argument }
      parent = Fiber.new do |argument|
        log << argument
        log << [:resume_returned, selector.resume(child, :child)]
        log << :parent
      end

      selector.resume(parent, :resumed)
      log << :select
      selector.select(0)

      # The child ends and control returns to the loop; the parent, queued by its
      # own resume call, continues at the next select.
      assert_equal :resumed, log[0]
      assert_equal :child, log[1]
      assert_equal :select, log[2]
      assert_equal :resume_returned, log[3][0]
      assert_equal :parent, log[4]
      assert_equal 5, log.size
    end

    def test_resume_removes_the_callers_entry_when_the_target_raises
      fiber = Fiber.new { raise Boom, "from target" }
      error = assert_raises(Boom) { selector.resume(fiber) }
      assert_equal "from target", error.message
      refute selector.ready?, "the caller's entry must be removed on the exception path"
      assert_kind_of Integer, selector.select(0)
    end

    def test_resume_removes_the_callers_entry_when_the_caller_is_raised_into
      log = []
      caller_fiber = nil
      target = Fiber.new do
        caller_fiber.raise(Boom, "into caller")
      end
      caller_fiber = Fiber.new do
        begin
          selector.resume(target)
          log << :resume_returned
        rescue Boom => error
          log << [:rescued, error.message]
        end
        stay_parked(log)
      end

      caller_fiber.transfer
      assert_equal [[:rescued, "into caller"]], log
      refute selector.ready?
      selector.select(0)
      selector.select(0)
      assert_equal [[:rescued, "into caller"]], log, "the caller was resumed again from a stale queue entry"
    end

    def test_resume_removes_the_callers_entry_when_the_target_transfers_back_directly
      log = []
      caller_fiber = nil
      target = Fiber.new { caller_fiber.transfer(:direct) }
      caller_fiber = Fiber.new do
        log << [:resume_returned, selector.resume(target)]
        stay_parked(log)
      end

      caller_fiber.transfer
      assert_equal [[:resume_returned, :direct]], log
      refute selector.ready?
      selector.select(0)
      assert_equal [[:resume_returned, :direct]], log, "the caller was resumed again from a stale queue entry"
    end

    def test_resume_accepts_a_non_fiber_object
      fake = FakeFiber.new(true, :fake_result)
      assert_equal :fake_result, selector.resume(fake, :argument)
      assert_equal 1, fake.count
      assert_equal [[:argument]], fake.arguments
      refute selector.ready?
    end

    def test_yield_from_a_fiber_resumes_at_next_select
      log = []
      fiber = yielding_fiber(log)
      selector.resume(fiber)
      log << :select
      selector.select(0)
      assert_equal [:yield, :select, :resumed], log
    end

    def test_yield_from_a_fiber_started_with_resume
      log = []
      child = yielding_fiber(log)
      parent = Fiber.new { child.resume }
      selector.resume(parent)
      log << :select
      selector.select(0)
      assert_equal [:yield, :select, :resumed], log
    end

    def test_raise_delivers_the_exception_into_the_target
      log = []
      fiber = Fiber.new do
        begin
          selector.yield
          log << :not_raised
        rescue Boom => error
          log << [:rescued, error.message]
        end
      end
      selector.push(fiber)
      selector.select(0)
      assert selector.ready?, "the yielding fiber is queued"

      log << :raise
      selector.raise(fiber, Boom, "Boom")
      assert_equal [:raise, [:rescued, "Boom"]], log
      refute fiber.alive?
      refute selector.ready?, "neither the target's yield entry nor the caller's entry may remain"
      assert_kind_of Integer, selector.select(0)
    end

    def test_raise_argument_forms
      [
        [[Boom], Boom, nil],
        [[Boom, "with message"], Boom, "with message"],
        [[Boom.new("instance")], Boom, "instance"],
        [["plain message"], RuntimeError, "plain message"],
      ].each do |arguments, klass, message|
        received = nil
        fiber = Fiber.new do
          main.transfer
        rescue Exception => error # rubocop:disable Lint/RescueException
          received = error
        end
        fiber.transfer
        selector.raise(fiber, *arguments)
        assert_instance_of klass, received, "raise(#{arguments.inspect})"
        assert_equal message, received.message if message
        refute selector.ready?
      end
    end

    def test_raise_resumes_the_caller_later
      log = []
      target = Fiber.new do
        main.transfer
      rescue Boom
        log << :target_rescued
        selector.transfer
        log << :target_resumed_unexpectedly
      end
      target.transfer

      raiser = Fiber.new do
        log << :raising
        selector.raise(target, Boom)
        log << :raiser_resumed
      end
      raiser.transfer

      assert_equal [:raising, :target_rescued], log
      assert selector.ready?, "the raising fiber is queued"
      log << :select
      selector.select(0)
      assert_equal [:raising, :target_rescued, :select, :raiser_resumed], log
    end
  end
end
