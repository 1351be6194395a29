# frozen_string_literal: true

require_relative "../../test_helper"
require_relative "../../support/tracked_selectors"
require "tempfile"
require "io/nonblock"

# IO::Event::Selector's module functions (default, new, nonblock,
# process_wait) and the checks of IO::Event::Debug::Selector.
class SelectorModuleTest < Minitest::Test
  Selector = IO::Event::Selector

  include TrackedSelectors

  # --- default ---------------------------------------------------------------

  def test_default_is_the_best_defined_selector
    expected =
      if Selector.const_defined?(:URing) then Selector::URing
      elsif Selector.const_defined?(:EPoll) then Selector::EPoll
      else Selector::Select
      end
    assert_equal expected, Selector.default({})
  end

  def test_default_with_an_empty_variable_is_the_best_selector
    assert_equal Selector.default({}), Selector.default({"IO_EVENT_SELECTOR" => ""})
  end

  def test_default_reads_env_by_default
    assert_equal Selector.default(ENV), Selector.default
  end

  def test_default_honours_the_variable_for_every_defined_selector
    IOEventTestHelper.selector_classes.each do |klass|
      name = klass.name.split("::").last
      assert_equal klass, Selector.default({"IO_EVENT_SELECTOR" => name})
    end
    assert_equal Selector::Select, Selector.default({"IO_EVENT_SELECTOR" => "Select"})
  end

  def test_default_with_an_unknown_name_raises_a_clear_name_error
    error = assert_raises(NameError) { Selector.default({"IO_EVENT_SELECTOR" => "Bogus"}) }
    assert_includes error.message, "Bogus"
    assert_includes error.message, "Select" # lists what is available
  end

  def test_default_rejects_names_that_are_not_selectors
    ["select", "Kernel", "PREFERENCE", "Select::Nope", "URing; exit"].each do |name|
      assert_raises(NameError, "IO_EVENT_SELECTOR=#{name}") { Selector.default({"IO_EVENT_SELECTOR" => name}) }
    end
  end

  # --- new -------------------------------------------------------------------

  def test_new_builds_the_named_selector_on_the_given_loop
    selector = track(Selector.new(Fiber.current, {"IO_EVENT_SELECTOR" => "Select"}))
    assert_instance_of Selector::Select, selector
    assert_same Fiber.current, selector.loop
    assert_equal 0, selector.select(0)
  end

  def test_new_builds_the_default_selector
    selector = track(Selector.new(Fiber.current, {}))
    assert_instance_of Selector.default({}), selector
  end

  def test_new_wraps_in_debug_when_asked
    selector = track(Selector.new(Fiber.current, {"IO_EVENT_SELECTOR" => "Select", "IO_EVENT_DEBUG_SELECTOR" => "1"}))
    assert_instance_of IO::Event::Debug::Selector, selector
    assert_instance_of Selector::Select, selector.selector
    assert_same Fiber.current, selector.loop
    assert_kind_of Integer, selector.select(0)
  end

  def test_new_does_not_wrap_for_empty_or_false_values
    ["", "0", "false"].each do |value|
      selector = track(Selector.new(Fiber.current, {"IO_EVENT_SELECTOR" => "Select", "IO_EVENT_DEBUG_SELECTOR" => value}))
      assert_instance_of Selector::Select, selector, "IO_EVENT_DEBUG_SELECTOR=#{value.inspect}"
    end
  end

  def test_debug_wraps_every_selector
    IOEventTestHelper.selector_classes.each do |klass|
      name = klass.name.split("::").last
      selector = track(Selector.new(Fiber.current, {"IO_EVENT_SELECTOR" => name, "IO_EVENT_DEBUG_SELECTOR" => "1"}))
      assert_instance_of IO::Event::Debug::Selector, selector
      assert_instance_of klass, selector.selector
      assert_kind_of Integer, selector.select(0)
      refute selector.ready?
      selector.close
      assert_predicate selector, :closed?
    end
  end

  def test_new_closes_the_selector_if_wrapping_fails
    # Debug::Selector refuses to wrap a selector made for another loop fiber.
    other_loop = Fiber.new {}
    before = Dir.children("/proc/self/fd")
    assert_raises(RuntimeError) do
      Selector.new(other_loop, {"IO_EVENT_SELECTOR" => "Select", "IO_EVENT_DEBUG_SELECTOR" => "1"})
    end
    # New numbers only: the GC may close unrelated descriptors meanwhile.
    assert_empty Dir.children("/proc/self/fd") - before, "the unwrapped selector leaked its descriptors"
  end

  # --- nonblock --------------------------------------------------------------

  def with_blocking_pipe
    input, output = IO.pipe
    input.nonblock = false
    yield input, output
  ensure
    input&.close
    output&.close
  end

  def test_nonblock_sets_the_flag_for_the_block_and_restores_it
    with_blocking_pipe do |input, _output|
      refute_predicate input, :nonblock?
      result = Selector.nonblock(input) do
        assert_predicate input, :nonblock?
        # A read on the now non-blocking descriptor does not block.
        assert_equal :wait_readable, input.read_nonblock(1, exception: false)
        :value
      end
      assert_equal :value, result
      refute_predicate input, :nonblock?
    end
  end

  def test_nonblock_restores_the_flag_when_the_block_raises
    with_blocking_pipe do |input, _output|
      assert_raises(ZeroDivisionError) do
        Selector.nonblock(input) { 1 / 0 }
      end
      refute_predicate input, :nonblock?
    end
  end

  def test_nonblock_leaves_an_already_non_blocking_io_non_blocking
    with_blocking_pipe do |input, _output|
      input.nonblock = true
      Selector.nonblock(input) { assert_predicate input, :nonblock? }
      assert_predicate input, :nonblock?
    end
  end

  def test_nonblock_keeps_other_flags
    Tempfile.create("io-event-nonblock") do |file|
      append = File.open(file.path, "a")
      flags = append.fcntl(Fcntl::F_GETFL)
      Selector.nonblock(append) { append.write("x") }
      assert_equal flags, append.fcntl(Fcntl::F_GETFL)
      append.close
    end
  end

  # Two fibers inside nonblock on one blocking descriptor, the first to enter
  # leaving first: the second must keep a non-blocking descriptor until it
  # leaves too (a blocking one would stall the whole event loop).
  def test_nonblock_stays_set_until_the_last_concurrent_block_leaves
    with_blocking_pipe do |input, _output|
      seen = []
      first = Fiber.new do
        Selector.nonblock(input) do
          Fiber.yield
          seen << [:first, input.nonblock?]
        end
      end
      second = Fiber.new do
        Selector.nonblock(input) do
          Fiber.yield
          seen << [:second, input.nonblock?]
        end
      end
      first.resume
      second.resume
      first.resume # first leaves while second is still inside
      assert_predicate input, :nonblock?, "cleared while another block still relied on it"
      second.resume
      assert_equal [[:first, true], [:second, true]], seen
      refute_predicate input, :nonblock?
    end
  end

  def test_nested_nonblock_restores_at_the_outermost_block
    with_blocking_pipe do |input, _output|
      Selector.nonblock(input) do
        Selector.nonblock(input) { assert_predicate input, :nonblock? }
        assert_predicate input, :nonblock?
      end
      refute_predicate input, :nonblock?
    end
  end

  def test_nonblock_on_a_closed_io_raises_io_error
    input, output = IO.pipe
    input.close
    assert_raises(IOError) { Selector.nonblock(input) { flunk "block ran" } }
  ensure
    output&.close
  end

  def test_nonblock_tolerates_the_block_closing_the_io
    with_blocking_pipe do |input, _output|
      Selector.nonblock(input) { input.close }
      assert_predicate input, :closed?
    end
  end

  def test_nonblock_does_not_touch_a_reused_descriptor
    with_blocking_pipe do |input, _output|
      reused = nil
      others = []
      Selector.nonblock(input) do
        number = input.fileno
        input.close
        # The lowest free number is the one just closed: the new pipe gets it.
        others = IO.pipe
        reused = others.find { |io| io.fileno == number }
        reused&.nonblock = true
      end
      skip "the descriptor number was not reused" unless reused
      assert_predicate reused, :nonblock?, "the restore changed an unrelated descriptor"
    ensure
      others&.each(&:close)
    end
  end

  # --- process_wait ----------------------------------------------------------

  def test_process_wait_returns_the_child_status
    pid = spawn("sh", "-c", "exit 3")
    status = Selector.process_wait(pid, 0)
    assert_kind_of Process::Status, status
    assert_equal pid, status.pid
    assert_equal 3, status.exitstatus
  end

  def test_process_wait_accepts_the_waiting_fiber_first
    pid = spawn("sh", "-c", "exit 4")
    status = Selector.process_wait(Fiber.current, pid, 0)
    assert_equal 4, status.exitstatus
  end

  # pid < -1: any child in that process group. (-1 could reap another test's
  # child, so a child in its own group stands in for "any child".)
  def test_process_wait_for_a_process_group
    pid = spawn("sh", "-c", "exit 6", pgroup: true)
    status = Selector.process_wait(-pid, 0)
    assert_equal pid, status.pid
    assert_equal 6, status.exitstatus
  end

  def test_process_wait_with_wnohang_returns_nil_while_the_child_runs
    pid = spawn("sleep", "5")
    assert_nil Selector.process_wait(pid, Process::WNOHANG)
  ensure
    if pid
      Process.kill(:KILL, pid)
      Process.wait(pid)
    end
  end

  def test_process_wait_does_not_leave_its_helper_thread
    before = Thread.list.size
    Selector.process_wait(spawn("true"), 0)
    assert_equal before, Thread.list.size
  end

  def test_process_wait_bad_arguments
    assert_raises(TypeError) { Selector.process_wait("1", 0) }
    assert_raises(ArgumentError) { Selector.process_wait(1) }
    assert_raises(ArgumentError) { Selector.process_wait(1, 2, 3, 4) }
  end

  # Interrupting the waiter kills the helper thread before the child exits, so
  # nothing reaps it behind the caller's back: a later wait gets its status.
  def test_interrupted_process_wait_kills_the_helper_and_leaves_the_child_waitable
    # Everything is far slower under GC.stress: give the child longer.
    lifetime = GC.stress ? 8 : 1
    pid = spawn("sh", "-c", "sleep #{lifetime}; exit 7")
    threads_before = Thread.list.size
    waiter = Thread.new do
      Thread.current.report_on_exception = false
      Selector.process_wait(pid, 0)
    end
    sleep 0.01 until waiter.status == "sleep"
    sleep 0.05
    waiter.raise(Interrupt)
    assert_raises(Interrupt) { waiter.value }

    # Well before the child exits (which would end a leftover helper anyway).
    deadline = monotonic + (lifetime / 2.0)
    sleep 0.01 until Thread.list.size <= threads_before || monotonic > deadline
    assert_equal threads_before, Thread.list.size, "the helper thread outlived the interrupted wait"

    _, status = Process.wait2(pid)
    assert_equal 7, status.exitstatus
    pid = nil
  ensure
    begin
      Process.wait(pid) if pid
    rescue Errno::ECHILD
      nil # Already reaped by the failing code under test.
    end
  end

  # Under a fiber scheduler the join only parks the calling fiber: here a
  # second fiber keeps running (and finishes first) while the wait goes on.
  def test_process_wait_only_parks_the_calling_fiber_under_a_scheduler
    events = Queue.new
    thread = Thread.new do
      Thread.current.report_on_exception = false
      scheduler = BlockScheduler.new
      Fiber.set_scheduler(scheduler)
      Fiber.schedule do
        status = Selector.process_wait(spawn("sh", "-c", "sleep 0.2; exit 2"), 0)
        events << [:waited, status.exitstatus]
      end
      Fiber.schedule do
        events << :other
      end
    end
    assert thread.join(10), "the scheduler thread did not finish"
    assert_equal [:other, [:waited, 2]], Array.new(2) { events.pop }
  end

  # The smallest scheduler that lets Thread#join park a fiber: block/unblock
  # over a Select selector, plus kernel_sleep and io_wait. It keeps every
  # fiber it started referenced until it finishes: a parked fiber that nothing
  # refers to is garbage (Ruby's join list lives on that fiber's own stack).
  class BlockScheduler
    def initialize
      @selector = Selector::Select.new(Fiber.current)
      @blocked = {}.compare_by_identity
      @fibers = []
    end

    def block(_blocker, timeout = nil)
      raise NotImplementedError, "timeouts are not needed here" if timeout

      fiber = Fiber.current
      @blocked[fiber] = true
      @selector.transfer
    ensure
      @blocked.delete(fiber)
    end

    def unblock(_blocker, fiber)
      @selector.push(fiber)
      @selector.wakeup
    end

    def kernel_sleep(duration = nil)
      block(nil, duration)
    end

    def io_wait(io, events, _timeout = nil)
      @selector.io_wait(Fiber.current, io, events)
    end

    def fiber(&block)
      fiber = Fiber.new(blocking: false, &block)
      @fibers << fiber
      @selector.resume(fiber)
      fiber
    end

    # Runs the loop until every fiber it started has finished.
    def close
      deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 60
      while @fibers.any?(&:alive?) && Process.clock_gettime(Process::CLOCK_MONOTONIC) < deadline
        @selector.select(0.5)
      end
      @selector.close
    end
  end

  # --- Select and Ruby 3.1's IO::Buffer ----------------------------------------

  # On 3.1, a slice of IO::Buffer.for(string) unlocks the string again when
  # collected, which crashes the GC ("object allocation during garbage
  # collection phase"). Select must not make such slices for transfers at an
  # offset. Run in a child, so a crash is a failure and not the end of the run.
  # A writable IO::Buffer over +string+: 3.2+ only makes it writable inside a
  # block (3.1 ignores the block and returns a writable buffer).
  def with_string_buffer(string)
    result = IO::Buffer.for(string) do |buffer|
      yield buffer
      :done
    end
    yield result unless result.equal?(:done)
  end

  def test_select_offset_transfers_into_string_buffers_survive_gc
    pid = fork do
      selector = Selector::Select.new(Fiber.current)
      input, output = IO.pipe
      20.times do
        result = nil
        with_string_buffer(+"0123456789") do |read_buffer|
          output.write("abc")
          Fiber.new { result = selector.io_read(Fiber.current, input, read_buffer, 3, 4) }.transfer
          exit!(2) unless result == 3 && read_buffer.get_string == "0123abc789"
        end

        with_string_buffer(+"xyzXYZ") do |write_buffer|
          Fiber.new { result = selector.io_write(Fiber.current, output, write_buffer, 2, 3) }.transfer
          exit!(3) unless result == 3 && input.read_nonblock(10) == "XYZ"
        end
      end
      GC.start
      GC.start
      exit!(0)
    end
    _, status = Process.wait2(pid)
    assert_equal 0, status.exitstatus, "child failed: #{status.inspect} (2: bad read, 3: bad write, signal: crash)"
  end
end
