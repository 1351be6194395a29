# frozen_string_literal: true

require_relative "../../../test_helper"
require_relative "../../../support/forked_child"
require_relative "../../../support/selector_variants"

# select(0) and select(0.0), the call an event loop makes on every turn. The
# native backends answer it on a short path when no fiber is ready; every
# case that path does not take must still behave as the full select does:
# events found are resumed in the same call, a pushed fiber runs, a closed,
# forked or foreign-thread selector raises, a fiber resumed by select(0) can
# call select(0) itself.
module SelectZeroContract
  include ForkedChild

  def test_nothing_to_do_answers_zero_for_integer_and_float_zero
    selector = new_selector
    assert_equal 0, selector.select(0)
    assert_equal 0, selector.select(0.0)
  ensure
    selector&.close
  end

  def test_a_readable_waiter_is_resumed_by_the_same_select_zero
    [0, 0.0].each do |zero|
      selector = new_selector
      input, output = IO.pipe
      result = nil
      Fiber.new { result = selector.io_wait(Fiber.current, input, IO::READABLE) }.transfer
      assert_equal 0, selector.select(zero), "nothing is readable yet"
      assert_nil result
      output.write("x")
      assert_equal 1, selector.select(zero), "select(#{zero.inspect}) must resume the readable waiter"
      assert_equal IO::READABLE, result
      assert_equal 0, selector.select(zero)
    ensure
      selector&.close
      input&.close
      output&.close
    end
  end

  def test_a_pushed_fiber_runs_in_select_zero
    selector = new_selector
    ran = false
    selector.push(Fiber.new { ran = true })
    selector.select(0)
    assert ran, "select(0) must run the ready queue"
  ensure
    selector&.close
  end

  def test_a_wakeup_while_not_blocked_leaves_select_zero_with_nothing
    selector = new_selector
    assert_equal false, Thread.new { selector.wakeup }.value, "nobody is blocked"
    assert_equal 0, selector.select(0)
    assert_equal 0, selector.select(0)
  ensure
    selector&.close
  end

  def test_a_fiber_resumed_by_select_zero_may_call_select_zero
    selector = new_selector
    input, output = IO.pipe
    inner = :not_called
    Fiber.new do
      selector.io_wait(Fiber.current, input, IO::READABLE)
      inner =
        begin
          selector.select(0)
        rescue RuntimeError => error
          error
        end
    end.transfer
    output.write("x")
    selector.select(0)
    assert(inner.is_a?(Integer) || inner.is_a?(RuntimeError), "nested select(0) answered #{inner.inspect}")
  ensure
    selector&.close
    input&.close
    output&.close
  end

  def test_select_zero_on_a_closed_selector_raises_io_error
    selector = new_selector
    selector.close
    assert_raises(IOError) { selector.select(0) }
    assert_raises(IOError) { selector.select(0.0) }
  end

  def test_select_zero_from_another_thread_raises_and_leaves_the_owner_working
    skip "the pure-Ruby Select may be used from any thread" if selector_class.name.end_with?("Select")

    selector = new_selector
    input, output = IO.pipe
    result = nil
    Fiber.new { result = selector.io_wait(Fiber.current, input, IO::READABLE) }.transfer
    output.write("x")
    error = Thread.new do
      selector.select(0)
      nil
    rescue StandardError => e
      e
    end.value
    assert_kind_of RuntimeError, error
    assert_nil result, "another thread's select(0) resumed the owner's waiter"
    assert_equal 1, selector.select(0)
    assert_equal IO::READABLE, result
  ensure
    selector&.close
    input&.close
    output&.close
  end

  def test_select_zero_in_a_forked_child_raises_io_error
    skip "the pure-Ruby Select has no kernel state to inherit" if selector_class.name.end_with?("Select")

    selector = new_selector
    outcome = in_child do
      selector.select(0)
      :returned
    rescue IOError => e
      e.class.name
    end
    assert_equal "IOError", outcome
    assert_equal 0, selector.select(0), "the parent's selector still works"
  ensure
    selector&.close
  end
end

SelectorVariants.define("SelectZero", SelectZeroContract, variants: SelectorVariants::PLAIN)
