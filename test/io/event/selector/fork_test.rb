# frozen_string_literal: true

require_relative "../../../test_helper"

# Fork semantics (PROTOCOL.md, "close"; STYLE.md 3.5): in a child the parent's
# selector reports closed? and is never touched; the child can build and use a
# selector of its own; the parent's operations in flight complete normally.
module SelectorForkContract
  FIBERS = 8

  def setup
    unless IO::Event::Selector.const_defined?(selector_class_name, false)
      skip "IO::Event::Selector::#{selector_class_name} is not defined in this process"
    end
    super
    @ios = []
    @selector = new_selector(Fiber.current)
  end

  def teardown
    @selector&.close unless @selector&.closed?
    @ios&.each { |io| io.close unless io.closed? }
    super
  end

  # Builds the selector with the variant's environment set around `new`
  # (IO_EVENT_URING_LEGACY is read by URing.new).
  def new_selector(loop)
    saved = selector_env.to_h { |key, _| [key, ENV[key]] }
    begin
      selector_env.each { |key, value| ENV[key] = value }
      IO::Event::Selector.const_get(selector_class_name, false).new(loop)
    ensure
      saved.each { |key, value| ENV[key] = value }
    end
  end

  def pipe
    pair = IO.pipe
    @ios.concat(pair)
    pair
  end

  def monotonic
    Process.clock_gettime(Process::CLOCK_MONOTONIC)
  end

  # Runs the block in a forked child. The block returns an Integer exit code
  # (0 for success); an exception is reported on stderr and exits with 99. The
  # child always leaves with exit!, so no at_exit handler (minitest's) runs there.
  def in_child(timeout: 10)
    pid = fork do
      code =
        begin
          yield
        rescue Exception => error # rubocop:disable Lint/RescueException
          $stderr.puts("child failed: #{error.class}: #{error.message}\n#{error.backtrace&.first(5)&.join("\n")}")
          99
        end
      $stderr.flush
      exit!(code.is_a?(Integer) ? code : 98)
    end

    deadline = monotonic + timeout
    loop do
      _, status = Process.waitpid2(pid, Process::WNOHANG)
      return status if status

      if monotonic > deadline
        Process.kill(:KILL, pid)
        Process.waitpid(pid)
        flunk "forked child did not finish within #{timeout}s"
      end
      sleep 0.005
    end
  end

  def test_forked_child_sees_closed
    @selector.select(0)
    status = in_child { @selector.closed? ? 0 : 1 }
    assert_equal 0, status.exitstatus, "closed? was not true in the child"
    refute @selector.closed?
  end

  def test_forked_child_can_close_the_inherited_selector_harmlessly
    status = in_child do
      @selector.close
      @selector.close
      @selector.closed? ? 0 : 1
    end
    assert_equal 0, status.exitstatus
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

    status = in_child do
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
    assert_equal 0, status.exitstatus, "child failed at step #{status.exitstatus}"

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

    status = in_child do
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
    assert_equal 0, status.exitstatus

    output.write("x")
    deadline = monotonic + 5
    @selector.select(0.05) until result || monotonic > deadline
    assert_equal IO::READABLE, result
  end
end

{
  "URing" => ["URing", {}],
  "URingLegacy" => ["URing", {"IO_EVENT_URING_LEGACY" => "1"}],
  "EPoll" => ["EPoll", {}],
  "Select" => ["Select", {}],
}.each do |label, (class_name, env)|
  klass = Class.new(Minitest::Test) do
    include SelectorForkContract

    define_method(:selector_class_name) { class_name }
    define_method(:selector_env) { env }
  end
  Object.const_set("SelectorFork#{label}Test", klass)
end
