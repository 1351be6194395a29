# frozen_string_literal: true

require_relative "../../../test_helper"
require_relative "../../../support/selector_variants"

# Fork semantics (PROTOCOL.md, "close"; STYLE.md 3.5): in a child the parent's
# selector reports closed? and is never touched; the child can build and use a
# selector of its own; the parent's operations in flight complete normally.
module SelectorForkContract
  FIBERS = 8

  include SelectorDriver
  include ForkedChild

  def test_forked_child_can_close_the_inherited_selector_harmlessly
    code = in_child do
      @selector.close
      @selector.close
      @selector.closed? ? 0 : 1
    end
    assert_equal 0, code
    refute @selector.closed?
    assert_kind_of Integer, @selector.select(0)
  end

  def test_fork_with_operations_in_flight
    pairs = Array.new(FIBERS) { pipe }
    counts = Array.new(FIBERS, 0)
    results = Array.new(FIBERS)
    pairs.each_with_index do |(input, _), index|
      selector = @selector
      Fiber.new do
        results[index] = selector.io_wait(Fiber.current, input, IO::READABLE)
        counts[index] += 1
      end.transfer
    end
    @selector.select(0)

    code = in_child do
      next 1 unless @selector.closed?

      # The child makes half of the parent's descriptors ready. A child that
      # reaped or cancelled through the parent's kernel objects would steal
      # these completions from the parent.
      pairs.each_with_index { |(_, output), index| output.write("c") if index.even? }
      @selector.close

      own = new_selector(Fiber.current)
      input, output = IO.pipe
      result = nil
      Fiber.new { result = own.io_wait(Fiber.current, input, IO::READABLE) }.transfer
      output.write("x")
      deadline = monotonic + 5
      own.select(0.1) until result || monotonic > deadline
      own.close
      next 2 unless result == IO::READABLE
      next 3 unless own.closed?

      0
    end
    assert_equal 0, code, "child failed at step #{code}"

    refute @selector.closed?
    pairs.each_with_index { |(_, output), index| output.write("p") if index.odd? }
    deadline = monotonic + 5
    @selector.select(0.05) until counts.all?(&:positive?) || monotonic > deadline
    3.times { @selector.select(0) }

    assert_equal [1] * FIBERS, counts, "every parked fiber of the parent resumes exactly once"
    assert_equal [IO::READABLE] * FIBERS, results
  end

  def test_selector_created_in_child_after_fork_works_while_parent_keeps_running
    input, output = pipe
    result = nil
    selector = @selector
    Fiber.new { result = selector.io_wait(Fiber.current, input, IO::READABLE) }.transfer

    code = in_child do
      own = new_selector(Fiber.current)
      child_input, child_output = IO.pipe
      values = []
      3.times do
        fiber = Fiber.new { values << own.io_wait(Fiber.current, child_input, IO::READABLE) }
        fiber.transfer
        child_output.write("x")
        deadline = monotonic + 5
        own.select(0.1) while fiber.alive? && monotonic < deadline
        child_input.read_nonblock(10)
      end
      stop = [false]
      waker = Thread.new do
        sleep 0.001 until stop[0] || own.wakeup
      end
      own.select(5)
      stop[0] = true
      waker.join
      own.close
      values == [IO::READABLE] * 3 ? 0 : 1
    end
    assert_equal 0, code

    output.write("x")
    deadline = monotonic + 5
    @selector.select(0.05) until result || monotonic > deadline
    assert_equal IO::READABLE, result
  end
end

SelectorVariants.define("SelectorFork", SelectorForkContract, variants: SelectorVariants::PLAIN)
