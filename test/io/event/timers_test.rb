# frozen_string_literal: true

require_relative "../../test_helper"

class TimersTest < Minitest::Test
  def setup
    @timers = IO::Event::Timers.new
  end

  def test_empty
    assert_equal 0, @timers.size
    assert_nil @timers.wait_interval
    assert_nil @timers.fire
  end

  def test_after_returns_a_handle_due_at_now_plus_offset
    before = @timers.now
    handle = @timers.after(0.5) {}
    after = @timers.now
    assert_kind_of IO::Event::Timers::Handle, handle
    assert_operator handle.time, :>=, before + 0.5
    assert_operator handle.time, :<=, after + 0.5
    refute_predicate handle, :cancelled?
    assert_equal 1, @timers.size
  end

  def test_now_is_the_monotonic_clock
    a = @timers.now
    b = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    c = @timers.now
    assert_operator a, :<=, b
    assert_operator b, :<=, c
  end

  def test_fire_calls_only_due_timers_and_passes_now
    calls = []
    @timers.schedule(10.0, ->(now) { calls << [:a, now] })
    @timers.schedule(20.0, ->(now) { calls << [:b, now] })

    @timers.fire(9.99)
    assert_empty calls
    assert_equal 2, @timers.size

    @timers.fire(10.0)
    assert_equal [[:a, 10.0]], calls
    assert_equal 1, @timers.size

    @timers.fire(25.0)
    assert_equal [[:a, 10.0], [:b, 25.0]], calls
    assert_equal 0, @timers.size
  end

  def test_fires_in_deadline_order_whatever_the_scheduling_order
    order = []
    [5, 1, 4, 2, 3].each { |time| @timers.schedule(time, -> (_now) { order << time }) }
    @timers.fire(10)
    assert_equal [1, 2, 3, 4, 5], order
  end

  def test_equal_deadlines_fire_in_scheduling_order
    order = []
    20.times { |index| @timers.schedule(1.0, ->(_now) { order << index }) }
    @timers.fire(1.0)
    assert_equal (0...20).to_a, order
  end

  def test_cancelled_timer_does_not_fire
    fired = []
    handle = @timers.schedule(1.0, ->(_now) { fired << :cancelled })
    @timers.schedule(2.0, ->(_now) { fired << :kept })
    handle.cancel!
    assert_predicate handle, :cancelled?
    assert_nil handle.block
    handle.cancel! # idempotent
    @timers.fire(5.0)
    assert_equal [:kept], fired
  end

  def test_cancel_after_the_timer_joined_the_heap
    fired = []
    handle = @timers.schedule(1.0, ->(_now) { fired << :x })
    assert_equal 1, @timers.size # flushes it into the heap
    handle.cancel!
    @timers.fire(5.0)
    assert_empty fired
    assert_equal 0, @timers.size
  end

  def test_cancelled_before_flush_is_not_counted
    handle = @timers.after(1) {}
    handle.cancel!
    assert_equal 0, @timers.size
    assert_nil @timers.wait_interval
  end

  def test_wait_interval
    @timers.schedule(10.0, ->(_now) {})
    @timers.schedule(4.0, ->(_now) {})
    assert_in_delta 3.0, @timers.wait_interval(1.0), 1e-9
    # Overdue: negative, as io-event reports it.
    assert_in_delta(-2.0, @timers.wait_interval(6.0), 1e-9)
  end

  def test_wait_interval_skips_cancelled_timers
    first = @timers.schedule(1.0, ->(_now) {})
    @timers.schedule(3.0, ->(_now) {})
    assert_in_delta 1.0, @timers.wait_interval(0.0), 1e-9
    first.cancel!
    assert_in_delta 3.0, @timers.wait_interval(0.0), 1e-9
  end

  def test_wait_interval_with_the_real_clock
    start = @timers.now
    @timers.after(0.2) {}
    interval = @timers.wait_interval
    elapsed = @timers.now - start
    assert_operator interval, :<=, 0.2
    assert_operator interval, :>=, 0.2 - elapsed
  end

  def test_timer_fires_after_its_offset_with_the_real_clock
    fired_at = nil
    handle = @timers.after(0.02) { |now| fired_at = now }
    @timers.fire
    # (Under GC.stress the deadline may already have passed here.)
    assert(fired_at.nil? || fired_at >= handle.time, "fired before its time")
    sleep 0.005 until @timers.now > handle.time
    @timers.fire
    refute_nil fired_at
    assert_operator fired_at, :>=, handle.time
    assert_equal 0, @timers.size
  end

  def test_timer_scheduled_while_firing_waits_for_the_next_fire
    fired = []
    @timers.schedule(1.0, lambda do |now|
      fired << :outer
      @timers.schedule(now, ->(_now) { fired << :inner }) # already due
    end)
    @timers.fire(1.0)
    assert_equal [:outer], fired
    assert_equal 1, @timers.size
    @timers.fire(1.0)
    assert_equal %i[outer inner], fired
  end

  def test_a_timer_can_cancel_a_later_one_while_firing
    fired = []
    later = nil
    @timers.schedule(1.0, ->(_now) { fired << :first; later.cancel! })
    later = @timers.schedule(1.5, ->(_now) { fired << :later })
    @timers.fire(2.0)
    assert_equal [:first], fired
  end

  def test_exception_from_a_timer_propagates_and_the_rest_fire_later
    fired = []
    @timers.schedule(1.0, ->(_now) { raise ArgumentError, "boom" })
    @timers.schedule(2.0, ->(_now) { fired << :second })
    assert_raises(ArgumentError) { @timers.fire(3.0) }
    assert_empty fired
    @timers.fire(3.0)
    assert_equal [:second], fired
  end

  def test_handle_call_and_comparison
    received = nil
    early = @timers.schedule(1.0, ->(now) { received = now })
    late = @timers.schedule(2.0, ->(_now) {})
    assert early < late
    assert late > early
    refute late < early
    early.call(42)
    assert_equal 42, received
  end

  def test_thousands_of_timers_fire_once_each_in_order
    random = Random.new(42)
    count = GC.stress ? 40 : 5000
    deadlines = Array.new(count) { random.rand * 100 }
    fired = []
    handles = deadlines.each_with_index.map do |time, index|
      @timers.schedule(time, ->(_now) { fired << index })
    end
    cancelled = handles.each_index.select { |index| index % 3 == 0 }
    cancelled.each { |index| handles[index].cancel! }

    # Fire in several steps, so some timers join the heap between fires.
    [25, 50, 75, 100].each do |now|
      @timers.fire(now)
      fired.each { |index| assert_operator deadlines[index], :<=, now }
    end

    expected = (0...count).to_a - cancelled
    assert_equal expected.sort, fired.sort
    assert_equal fired.size, fired.uniq.size
    fired.each_cons(2) { |a, b| assert_operator deadlines[a], :<=, deadlines[b] }
    assert_equal 0, @timers.size
    assert_nil @timers.wait_interval
  end

  def test_after_needs_a_block_and_an_offset_with_to_f
    assert_raises(ArgumentError) { @timers.after(1) }
    error = assert_raises(NoMethodError) { @timers.after(Object.new) {} }
    assert_equal :to_f, error.name
    assert_raises(ArgumentError) { @timers.schedule(1.0, nil) }
    assert_raises(TypeError) { @timers.schedule(nil, -> {}) }
    assert_equal 0, @timers.size
  end

  def test_after_converts_the_offset_with_to_f_as_io_event_does
    before = @timers.now
    handle = @timers.after(nil) {} # nil.to_f is 0.0: due now
    assert_operator handle.time, :>=, before
    assert_operator handle.time, :<=, @timers.now
    assert_operator @timers.after("2.5") {}.time, :>=, before + 2.5
  end

  # --- compaction ---------------------------------------------------------------

  def heap
    @timers.instance_variable_get(:@heap)
  end

  def schedule_far(count)
    Array.new(count) { |index| @timers.after(1000 + index) {} }
  end

  def test_cancelled_timers_are_compacted_once_many_and_most_of_the_heap
    minimum = IO::Event::Timers::COMPACT_MINIMUM_COUNT
    assert_equal 128, minimum
    handles = schedule_far(300)
    assert_equal 300, @timers.size
    handles.last(200).each(&:cancel!)
    assert_equal 100, @timers.size, "200 of 300 cancelled: compacted"
    assert_predicate heap, :valid?
    assert_in_delta 1000, @timers.wait_interval, 1
  end

  def test_a_few_cancelled_timers_stay_until_they_reach_the_top
    handles = schedule_far(300)
    @timers.size
    handles.last(140).each(&:cancel!)
    assert_equal 300, @timers.size, "140 of 300 is not more than half"
    timers = IO::Event::Timers.new
    small = Array.new(200) { |index| timers.after(1000 + index) {} }
    timers.size
    small.last(127).each(&:cancel!)
    assert_equal 200, timers.size, "127 is under COMPACT_MINIMUM_COUNT"
    small[0].cancel!
    assert_equal 72, timers.size, "128 of 200: compacted"
  end

  def test_an_entirely_cancelled_heap_is_emptied
    handles = schedule_far(5)
    assert_equal 5, @timers.size
    handles.each(&:cancel!)
    assert_equal 0, @timers.size
    assert_nil @timers.wait_interval
  end

  def test_cancelling_twice_or_before_the_heap_or_after_firing_counts_once
    handles = schedule_far(200)
    handles.first(10).each(&:cancel!) # before they joined the heap
    assert_equal 190, @timers.size
    fired = @timers.after(-1) { :fired }
    @timers.fire
    fired.cancel! # already left the heap
    handles[10, 100].each { |handle| 2.times { handle.cancel! } }
    assert_equal 190, @timers.size, "100 counted once each: below COMPACT_MINIMUM_COUNT"
    handles[110, 28].each(&:cancel!)
    assert_equal 62, @timers.size, "128 counted of 190: compacted"
  end

  def test_compaction_keeps_order_and_timers_scheduled_meanwhile
    handles = schedule_far(300)
    @timers.size
    handles.each_with_index { |handle, index| handle.cancel! if index.odd? || index > 200 }
    fired = []
    late = @timers.after(-0.5) { fired << :late }
    early = @timers.after(-1) { fired << :early }
    early_cancelled = @timers.after(-2) { fired << :cancelled }
    early_cancelled.cancel!
    @timers.fire
    assert_equal %i[early late], fired
    assert_equal 101, @timers.size
    assert_predicate heap, :valid?
  end

  def test_after_accepts_integers_and_rationals
    a = @timers.after(1) {}
    b = @timers.after(Rational(1, 2)) {}
    assert_kind_of Float, a.time
    assert_operator b.time, :<, a.time
  end
end
