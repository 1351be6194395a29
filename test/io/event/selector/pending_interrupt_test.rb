# frozen_string_literal: true

require_relative "../../../test_helper"
require_relative "../../../support/scheduler"
require_relative "../../../support/selector_variants"

# An interrupt pending for the thread, even one deferred by
# Thread.handle_interrupt, must not leave select blocked: select(nil) returns 0
# at once when one is already pending, and an exception sent with Thread#raise
# to a thread blocked in select(nil) under such a mask ends the wait with 0; the
# exception is delivered when the mask ends (as io-event 1.19.4 does).
#
# Each scenario runs in a forked child: on a selector without this behaviour
# the blocked thread could not even be killed (the mask defers Thread#kill too).
module PendingInterruptContract
  include SelectorDriver
  include ForkedChild

  # "At once", generously: far below the seconds a blocked select would take.
  PROMPT = 0.5

  # If select is still blocked this long after the interrupt, the child wakes
  # it with an unrelated #wakeup, so the test reports instead of hanging.
  RESCUE_AFTER = 2.0

  class Stop < StandardError; end

  def test_pending_masked_interrupt_does_not_block_select
    [SignalException, Object].each do |masked|
      [nil, 30].each do |duration|
        outcome = in_child { select_with_pending_interrupt(masked, duration) }
        context = "mask #{masked} => :never, select(#{duration.inspect})"
        refute outcome[:woken], "#{context}: select blocked until an unrelated wakeup"
        assert_equal 0, outcome[:result], context
        assert_operator outcome[:elapsed], :<, PROMPT, context
        assert outcome[:still_pending], "#{context}: select consumed the interrupt"
        assert_equal "pending", outcome[:delivered], "#{context}: not delivered when the mask ended"
      end
    end
  end

  def test_thread_raise_ends_a_masked_select_on_another_thread
    outcome = in_child { raise_into_masked_select(main_thread: false, with_waiter: false) }
    assert_interrupted_select(outcome)
  end

  def test_thread_raise_ends_a_masked_select_on_the_main_thread
    outcome = in_child { raise_into_masked_select(main_thread: true, with_waiter: false) }
    assert_interrupted_select(outcome)
  end

  def test_thread_raise_ends_a_masked_select_with_a_fiber_in_io_wait
    [false, true].each do |main_thread|
      outcome = in_child { raise_into_masked_select(main_thread: main_thread, with_waiter: true) }
      assert_interrupted_select(outcome, "main_thread=#{main_thread}")
      assert_equal :still_waiting, outcome[:waiter], "the io_wait fiber was resumed by the interrupt"
    end
  end

  def test_scheduler_on_another_thread_interrupted_twice_runs_ensure_each_time
    outcome = in_child(timeout: 15) { interrupt_sleeping_scheduler(rounds: 2) }
    expected = [0, 1].flat_map { |round| [[:sleeping, round], [:interrupted, round], [:ensure, round]] }
    assert_equal expected, outcome[:log], outcome[:note]
    assert_equal :finished, outcome[:thread]
  end

  private

  # --- (a) an interrupt already pending ---------------------------------------

  def select_with_pending_interrupt(masked, duration)
    selector = new_selector(Fiber.current)
    outcome = {woken: false}
    watchdog = Thread.new do
      sleep RESCUE_AFTER
      outcome[:woken] = true
      selector.wakeup
    end
    begin
      Thread.handle_interrupt(masked => :never) do
        Thread.current.raise(Interrupt, "pending")
        started = monotonic
        outcome[:result] = selector.select(duration)
        outcome[:elapsed] = monotonic - started
        outcome[:still_pending] = Thread.pending_interrupt?
      end
      outcome[:delivered] = :never
    rescue Interrupt => error
      outcome[:delivered] = error.message
    end
    watchdog.kill
    watchdog.join
    selector.close
    outcome
  end

  # --- (b), (c) Thread#raise into a blocked select ----------------------------

  # Blocks in select(nil) under Thread.handle_interrupt(SignalException =>
  # :never), on the child's main thread or on a new one, optionally with a
  # fiber parked in io_wait on a pipe, and sends Interrupt with Thread#raise.
  def raise_into_masked_select(main_thread:, with_waiter:)
    box = {}
    ready = Queue.new
    body = lambda do
      selector = new_selector(Fiber.current)
      box[:selector] = selector
      input, output = IO.pipe
      if with_waiter
        Fiber.new do
          box[:waiter] = selector.io_wait(Fiber.current, input, IO::READABLE)
        end.transfer
      end
      begin
        Thread.handle_interrupt(SignalException => :never) do
          ready << true
          box[:result] = selector.select(nil)
          box[:returned_at] = monotonic
          box[:pending_after] = Thread.pending_interrupt?
        end
        box[:delivered] = :never
      rescue Interrupt => error
        box[:delivered] = error.message
      end
      box[:waiter] = :still_waiting unless box.key?(:waiter)
      selector.close
      input.close
      output.close
    end

    if main_thread
      target = Thread.current
      sender = Thread.new { send_interrupt(target, ready, box) }
      body.call
      sender.join
    else
      target = Thread.new do
        Thread.current.report_on_exception = false
        body.call
      end
      send_interrupt(target, ready, box)
      target.join(RESCUE_AFTER + 3) or box[:stuck] = true
    end
    box.delete(:selector)
    box
  end

  def send_interrupt(target, ready, box)
    ready.pop
    wait_until_sleeping(target)
    box[:raised_at] = monotonic
    target.raise(Interrupt, "sent")
    deadline = monotonic + RESCUE_AFTER
    sleep 0.01 until box.key?(:returned_at) || monotonic > deadline
    return if box.key?(:returned_at)

    box[:needed_wakeup] = true
    box[:selector].wakeup
  end

  def wait_until_sleeping(thread)
    deadline = monotonic + 5
    sleep 0.001 until thread.status == "sleep" || !thread.alive? || monotonic > deadline
    sleep 0.05 # into the wait itself, not just the status change
  end

  def assert_interrupted_select(outcome, context = nil)
    refute outcome[:stuck], "#{context}: the thread never left select (not even after a wakeup)"
    refute outcome[:needed_wakeup], "#{context}: Thread#raise did not end select(nil); only a wakeup did"
    assert_equal 0, outcome[:result], context
    assert_operator outcome[:returned_at] - outcome[:raised_at], :<, PROMPT, context
    assert outcome[:pending_after], "#{context}: the interrupt was not pending after select returned"
    assert_equal "sent", outcome[:delivered], "#{context}: the interrupt was not delivered when the mask ended"
  end

  # --- (d) an async-style scheduler on another thread ------------------------

  # As async's Scheduler#run: the loop runs with signal exceptions deferred,
  # stops when one is pending, lets it in, and stops its tasks (whose ensure
  # code runs) by raising into them.
  def interrupt_sleeping_scheduler(rounds:)
    log = Queue.new
    box = {}
    thread = Thread.new do
      Thread.current.report_on_exception = false
      run_interruptible_scheduler(rounds, log, box)
    end

    note = nil
    rounds.times do |round|
      unless wait_for_entry(log, box, [:sleeping, round])
        note = "round #{round}: the task never slept"
        break
      end
      wait_until_sleeping(thread)
      thread.raise(Interrupt, "round #{round}")
      next if wait_for_entry(log, box, [:ensure, round], timeout: RESCUE_AFTER)

      note = "round #{round}: Thread#raise did not stop the sleeping scheduler"
      break
    end
    finished = note.nil? && thread.join(5)
    {log: box.fetch(:entries, []), note: note, thread: finished ? :finished : :stuck}
  end

  def run_interruptible_scheduler(rounds, log, box)
    scheduler = IOEventTestScheduler.new(new_selector(Fiber.current))
    Fiber.set_scheduler(scheduler)
    rounds.times do |round|
      task = Fiber.schedule do
        log << [:sleeping, round]
        sleep
      ensure
        log << [:ensure, round]
      end
      begin
        Thread.handle_interrupt(SignalException => :never) do
          scheduler.run_once until Thread.pending_interrupt?
        end
        Thread.handle_interrupt(SignalException => :immediate) {}
      rescue Interrupt
        log << [:interrupted, round]
        scheduler.selector.raise(task, Stop) if task.alive?
      end
    end
  ensure
    Fiber.set_scheduler(nil)
  end

  # Moves entries from +log+ into box[:entries] until +entry+ shows up.
  def wait_for_entry(log, box, entry, timeout: 5)
    entries = (box[:entries] ||= [])
    deadline = monotonic + timeout
    until entries.include?(entry)
      return false if monotonic > deadline

      item = pop_until(log, deadline)
      entries << item if item
    end
    true
  end

  # Queue#pop with a deadline (Queue#pop(timeout:) needs Ruby 3.2).
  def pop_until(queue, deadline)
    until monotonic > deadline
      return queue.pop(true) unless queue.empty?

      sleep 0.005
    end
    nil
  end
end

SelectorVariants.define("PendingInterrupt", PendingInterruptContract)
