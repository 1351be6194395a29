# frozen_string_literal: true

# Issue 9, item 11 (suspected): the loop fiber calling an operation on its
# own selector. Parking would mean switching to itself. It must either work
# (when the operation can complete at once) or raise a clear exception at
# once; never hang, never crash, and never leave an operation in flight that
# later consumes data or writes into the buffer.

require_relative "support"

module SoundnessLoopFiber
  include Soundness::Helpers

  CLEAR = Soundness::CLEAR_ERRORS + [RuntimeError]

  def on_the_loop(selector)
    outcome, elapsed = timed { yield }
    step "on the loop fiber: #{outcome.inspect} after #{elapsed.round(3)}s"
    assert_operator elapsed, :<, 1.0, "the call on the loop fiber blocked"
    if outcome.is_a?(Exception)
      assert CLEAR.any? { |klass| outcome.is_a?(klass) }, "unclear exception: #{outcome.class}: #{outcome.message}"
    end
    assert_kind_of Integer, selector.select(0), "select(0) after the call"
    assert_equal false, selector.wakeup
    outcome
  end

  def finish(selector, fds)
    selector.close
    assert selector.closed?
    assert_empty describe_fds(fd_list - fds), "descriptors left behind"
  end

  # In a child: a new selector and a pipe, given to the block; then both are
  # closed and no descriptor may be left behind.
  def with_selector_and_pipe(label, **options)
    isolated(label: label, **options) do
      fds = fd_list
      input, output = IO.pipe
      selector = new_selector(Fiber.current)
      yield selector, input, output
      input.close
      output.close
      finish(selector, fds)
      true
    end
  end

  def test_io_wait_on_an_empty_pipe_from_the_loop_fiber
    with_selector_and_pipe("loop fiber io_wait, nothing ready") do |selector, input, output|
      outcome = on_the_loop(selector) { selector.io_wait(Fiber.current, input, IO::READABLE) }
      refute_equal IO::READABLE, outcome, "io_wait reported an event that never happened"
      output.write("x")
      5.times { selector.select(0.01) }
      assert_equal "x", input.read_nonblock(8)
    end
  end

  def test_io_wait_on_a_ready_pipe_from_the_loop_fiber
    with_selector_and_pipe("loop fiber io_wait, ready") do |selector, input, output|
      output.write("x")
      outcome = on_the_loop(selector) { selector.io_wait(Fiber.current, input, IO::READABLE) }
      # false is "resumed without an event": transfer on the loop fiber returns at once.
      assert(outcome.is_a?(Exception) || [IO::READABLE, false].include?(outcome), "io_wait on a ready pipe must work, answer false or raise, got #{outcome.inspect}")
    end
  end

  def test_io_read_on_an_empty_pipe_from_the_loop_fiber
    with_selector_and_pipe("loop fiber io_read, nothing there", timeout: 3) do |selector, input, output|
      buffer = IO::Buffer.new(16)
      outcome = on_the_loop(selector) { selector.io_read(Fiber.current, input, buffer, 4) }
      refute outcome.is_a?(Integer) && outcome.positive?, "io_read returned #{outcome.inspect} bytes that were never written"
      output.write("late")
      5.times { selector.select(0.01) }
      assert_equal "late", input.read_nonblock(8), "a read left in flight consumed the data"
      assert buffer.get_string.each_byte.all?(&:zero?), "the buffer was written after the call returned"
      refute buffer.locked?, "the buffer stays locked"
    end
  end

  def test_io_read_on_a_ready_pipe_from_the_loop_fiber
    with_selector_and_pipe("loop fiber io_read, data there") do |selector, input, output|
      output.write("data")
      buffer = IO::Buffer.new(16)
      outcome = on_the_loop(selector) { selector.io_read(Fiber.current, input, buffer, 4) }
      if outcome.is_a?(Integer)
        assert_equal [4, "data"], [outcome, buffer.get_string(0, 4)]
      else
        assert_kind_of Exception, outcome
      end
    end
  end

  def test_io_write_from_the_loop_fiber
    with_selector_and_pipe("loop fiber io_write") do |selector, input, output|
      buffer = IO::Buffer.new(4)
      buffer.set_string("abcd")
      outcome = on_the_loop(selector) { selector.io_write(Fiber.current, output, buffer, 4) }
      assert_equal "abcd", input.read_nonblock(8) if outcome == 4
    end
  end

  def test_process_wait_from_the_loop_fiber
    require_selector_method(:process_wait)
    isolated(label: "loop fiber process_wait") do
      fds = fd_list
      selector = new_selector(Fiber.current)
      pid = Process.spawn("sleep", "0.2")
      outcome = on_the_loop(selector) { selector.process_wait(Fiber.current, pid, 0) }
      if outcome.is_a?(Process::Status)
        assert_equal pid, outcome.pid
      else
        _, status = Process.wait2(pid)
        assert_equal 0, status.exitstatus, "the child's status was consumed by the failed process_wait"
      end
      finish(selector, fds)
      true
    end
  end

  def test_transfer_yield_and_resume_of_itself_from_the_loop_fiber
    isolated(label: "loop fiber transfer/yield/resume(loop)") do
      selector = new_selector(Fiber.current)
      assert_nil selector.transfer, "transfer on the loop fiber returns nil at once"
      on_the_loop(selector) { selector.yield }
      on_the_loop(selector) { selector.resume(Fiber.current) }
      refute selector.ready?, "a failed yield/resume left the loop fiber on the ready queue"
      selector.close
      true
    end
  end
end

SelectorVariants.define("SoundnessLoopFiber", SoundnessLoopFiber, variants: SelectorVariants::PLAIN)
