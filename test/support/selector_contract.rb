# frozen_string_literal: true

# The behaviour every selector must share (see PROTOCOL.md, "Every selector
# instance"). Include this module in a Minitest::Test subclass that defines
# `selector_class`; override `new_selector(loop)` to build the selector some other
# way (a Debug wrapper, an environment switch around `new`).
#
# Each test builds its own selector on `Fiber.current` (the test's root fiber is
# the event loop) and teardown closes it. Fibers under test are entered with
# `transfer`, as a scheduler does, so they can be parked and switched freely.

require "fiber"
require "socket"

module SelectorContract
  # An object that is not a Fiber but quacks like one: the ready queue and
  # `resume` must accept it.
  class FakeFiber
    attr_reader :count, :arguments

    def initialize(alive = true, result = nil)
      @alive = alive
      @result = result
      @count = 0
      @arguments = []
    end

    def alive?
      @alive
    end

    def transfer(*arguments)
      @count += 1
      @arguments << arguments
      @result
    end
  end

  # Raised into waiting fibers by the tests; never raised by a selector.
  class Boom < StandardError; end

  # Generous bound for "returns promptly": far below the 1 s or forever the
  # call would otherwise take, far above scheduling noise on a loaded machine.
  PROMPT = 0.5

  def new_selector(loop)
    selector_class.new(loop)
  end

  def setup
    super
    @tracked_selectors = []
    @tracked_ios = []
    # Created here, on the test's root fiber, so that it is the loop fiber even
    # when a test first touches `selector` from inside another fiber.
    @selector = make_selector(Fiber.current)
  end

  def teardown
    @tracked_selectors&.each do |selector|
      next if selector.respond_to?(:closed?) && selector.closed?

      selector.close
    end
  ensure
    @tracked_ios&.each { |io| io.close unless io.closed? }
    super
  end

  # The selector under test; its loop is the test's root fiber.
  attr_reader :selector

  def make_selector(loop)
    track_selector(new_selector(loop))
  end

  def track_selector(selector)
    @tracked_selectors << selector
    selector
  end

  def main
    selector.loop
  end

  def pipe
    ios = IO.pipe
    @tracked_ios.concat(ios)
    ios
  end

  def socket_pair
    ios = UNIXSocket.pair
    @tracked_ios.concat(ios)
    ios
  end

  def monotonic
    Process.clock_gettime(Process::CLOCK_MONOTONIC)
  end

  def elapsed
    start = monotonic
    yield
    monotonic - start
  end

  # A fiber that parks in io_wait and records what io_wait returned (or raised).
  # After that it stays alive, parked by a plain transfer to the loop, and logs
  # anything that resumes it: a correct selector never does.
  def waiting_fiber(io, events, log, tag = :io_wait)
    Fiber.new do
      begin
        log << [tag, selector.io_wait(Fiber.current, io, events)]
      rescue Exception => error # rubocop:disable Lint/RescueException
        log << [tag, error]
      end
      stay_parked(log)
    end
  end

  def stay_parked(log)
    loop_fiber = selector.loop
    # Bounded: each iteration needs an outside resume.
    1000.times { log << [:stale_resume, loop_fiber.transfer] }
  end

  # Calls `selector.wakeup` from another thread until it reports that the
  # selector was blocked (true), or until told to stop. Returns the thread;
  # its value is true when a wakeup hit a blocked select.
  def wakeup_thread(selector, stop)
    Thread.new do
      deadline = monotonic + 5
      woken = false
      until stop[0] || monotonic > deadline
        if selector.wakeup
          woken = true
          break
        end
        sleep 0.001
      end
      woken
    end
  end

  # Runs `selector.select(duration)` while another thread calls wakeup, until
  # a wakeup has hit the blocked selector. A select that returns with the
  # wakeup thread still polling ended for another reason (any signal to the
  # process may end a blocking select, as PROTOCOL.md allows, e.g. SIGCHLD from
  # a child of an earlier test): it is repeated, at most a few times.
  # Returns [woken, last select result, seconds the last select took].
  def select_until_woken(selector, duration)
    stop = [false]
    thread = wakeup_thread(selector, stop)
    result = nil
    last = nil
    5.times do
      last = elapsed { result = selector.select(duration) }
      break if thread.join(0.1)
    end
    stop[0] = true
    [thread.value, result, last]
  ensure
    stop[0] = true
    thread&.join
  end

  # --- select -----------------------------------------------------------------

  def test_select_zero_returns_integer_without_blocking
    result = nil
    duration = elapsed { result = selector.select(0) }
    assert_kind_of Integer, result
    assert_equal 0, result, "nothing was pending, so no event was handled"
    assert_operator duration, :<, PROMPT

    assert_kind_of Integer, selector.select(0.0)
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
    fiber = Fiber.new do
      log << :yield
      selector.yield
      log << :resumed
    end
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
    fiber = Fiber.new do
      log << :yield
      selector.yield
      log << :resumed
    end
    selector.resume(fiber)
    log << :select
    selector.select(0)
    assert_equal [:yield, :select, :resumed], log
  end

  def test_yield_from_a_fiber_started_with_resume
    log = []
    child = Fiber.new do
      log << :yield
      selector.yield
      log << :resumed
    end
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

  # --- io_wait ----------------------------------------------------------------

  def test_io_wait_readable_on_a_pipe
    input, output = pipe
    log = []
    fiber = waiting_fiber(input, IO::READABLE, log)
    fiber.transfer
    assert_empty log

    selector.select(0)
    assert_empty log, "nothing was written yet"

    output.write("x")
    count = selector.select(1)
    assert_equal [[:io_wait, IO::READABLE]], log
    assert_kind_of Integer, count
    assert_operator count, :>=, 1
  end

  def test_io_wait_readable_on_a_socket_pair
    local, remote = socket_pair
    log = []
    waiting_fiber(local, IO::READABLE, log).transfer
    remote.write("hello")
    selector.select(1)
    assert_equal [[:io_wait, IO::READABLE]], log
  end

  def test_io_wait_writable_on_a_pipe
    _input, output = pipe
    log = []
    waiting_fiber(output, IO::WRITABLE, log).transfer
    selector.select(1)
    assert_equal [[:io_wait, IO::WRITABLE]], log
  end

  def test_io_wait_writable_on_a_socket_pair
    local, _remote = socket_pair
    log = []
    waiting_fiber(local, IO::WRITABLE, log).transfer
    selector.select(1)
    assert_equal [[:io_wait, IO::WRITABLE]], log
  end

  def test_io_wait_returns_only_the_requested_bits
    local, remote = socket_pair
    remote.write("pending data")

    # Readable and writable, but only writability was asked for.
    log = []
    waiting_fiber(local, IO::WRITABLE, log).transfer
    selector.select(1)
    assert_equal [[:io_wait, IO::WRITABLE]], log

    # Only readability asked for.
    log = []
    waiting_fiber(local, IO::READABLE, log).transfer
    selector.select(1)
    assert_equal [[:io_wait, IO::READABLE]], log

    # Both asked, both ready.
    log = []
    waiting_fiber(local, IO::READABLE | IO::WRITABLE, log).transfer
    selector.select(1)
    assert_equal [[:io_wait, IO::READABLE | IO::WRITABLE]], log

    # Both asked, only writability ready.
    other, _peer = socket_pair
    log = []
    waiting_fiber(other, IO::READABLE | IO::WRITABLE, log).transfer
    selector.select(1)
    assert_equal [[:io_wait, IO::WRITABLE]], log
  end

  def test_io_wait_reports_hangup_as_readable
    input, output = pipe
    log = []
    waiting_fiber(input, IO::READABLE, log).transfer
    selector.select(0)
    assert_empty log

    output.close
    selector.select(1)
    assert_equal [[:io_wait, IO::READABLE]], log
    assert_equal "", input.read, "the reader sees EOF"
  end

  def test_io_wait_reports_peer_shutdown_as_readable
    local, remote = socket_pair
    log = []
    waiting_fiber(local, IO::READABLE, log).transfer
    remote.close
    selector.select(1)
    assert_equal [[:io_wait, IO::READABLE]], log
  end

  def test_io_wait_on_an_already_ready_io
    input, output = pipe
    output.write("already there")
    log = []
    waiting_fiber(input, IO::READABLE, log).transfer
    selector.select(1)
    assert_equal [[:io_wait, IO::READABLE]], log
  end

  def test_io_wait_readable_and_writable_from_two_fibers
    local, remote = socket_pair
    log = []
    waiting_fiber(local, IO::READABLE, log, :reader).transfer
    waiting_fiber(local, IO::WRITABLE, log, :writer).transfer
    remote.write("hello")

    selector.select(1)
    selector.select(0) if log.size < 2
    assert_equal [[:reader, IO::READABLE], [:writer, IO::WRITABLE]], log.sort_by { |tag, _| tag.to_s }
  end

  def test_io_wait_writer_completes_while_reader_keeps_waiting
    local, remote = socket_pair
    log = []
    waiting_fiber(local, IO::READABLE, log, :reader).transfer
    waiting_fiber(local, IO::WRITABLE, log, :writer).transfer

    selector.select(1)
    assert_equal [[:writer, IO::WRITABLE]], log

    remote.write("hello")
    selector.select(1)
    assert_equal [[:writer, IO::WRITABLE], [:reader, IO::READABLE]], log
  end

  def test_two_fibers_reading_one_io
    input, output = pipe
    log = []
    waiting_fiber(input, IO::READABLE, log, :first).transfer
    waiting_fiber(input, IO::READABLE, log, :second).transfer

    output.write("x")
    selector.select(1)
    selector.select(0) if log.size < 2
    assert_equal [[:first, IO::READABLE], [:second, IO::READABLE]], log.sort_by { |tag, _| tag.to_s }
  end

  def test_two_io_objects_sharing_one_descriptor
    input, output = pipe
    alias_io = IO.for_fd(input.fileno, autoclose: false)
    log = []

    fiber = Fiber.new do
      log << [:first, selector.io_wait(Fiber.current, input, IO::READABLE)]
      input.read_nonblock(10)
      log << [:second, selector.io_wait(Fiber.current, alias_io, IO::READABLE)]
      alias_io.read_nonblock(10)
      log << [:third, selector.io_wait(Fiber.current, input, IO::READABLE)]
    end
    fiber.transfer

    output.write("1")
    selector.select(1)
    assert_equal [[:first, IO::READABLE]], log

    selector.select(0)
    assert_equal 1, log.size, "the drained descriptor must not report readable"

    output.write("2")
    selector.select(1)
    assert_equal [[:first, IO::READABLE], [:second, IO::READABLE]], log

    output.write("3")
    selector.select(1)
    assert_equal [[:first, IO::READABLE], [:second, IO::READABLE], [:third, IO::READABLE]], log
    refute fiber.alive?
  ensure
    alias_io&.close
  end

  def test_two_io_objects_sharing_one_descriptor_waited_on_together
    input, output = pipe
    alias_io = IO.for_fd(input.fileno, autoclose: false)
    log = []
    waiting_fiber(input, IO::READABLE, log, :original).transfer
    waiting_fiber(alias_io, IO::READABLE, log, :alias).transfer

    output.write("x")
    selector.select(1)
    selector.select(0) if log.size < 2
    assert_equal [[:alias, IO::READABLE], [:original, IO::READABLE]], log.sort_by { |tag, _| tag.to_s }
  ensure
    alias_io&.close
  end

  def test_waiting_on_a_reused_descriptor_number
    local, remote = socket_pair
    log = []
    fiber = Fiber.new do
      remote.write("one")
      log << [:first, selector.io_wait(Fiber.current, local, IO::READABLE)]

      descriptor = local.fileno
      local.close
      new_local, new_remote = UNIXSocket.pair
      @tracked_ios.push(new_local, new_remote)
      new_local, new_remote = new_remote, new_local if new_remote.fileno == descriptor
      log << [:same_descriptor, new_local.fileno == descriptor]

      new_remote.write("two")
      log << [:second, selector.io_wait(Fiber.current, new_local, IO::READABLE)]
    end
    fiber.transfer
    selector.select(1)
    selector.select(1) if fiber.alive?

    assert_equal [:first, IO::READABLE], log[0]
    assert_equal [:second, IO::READABLE], log[2]
    refute fiber.alive?
  end

  def test_io_wait_many_fibers_each_resumed_once
    pairs = 20.times.map { pipe }
    log = []
    pairs.each_with_index { |(input, _), index| waiting_fiber(input, IO::READABLE, log, index).transfer }
    pairs.each { |_, output| output.write("x") }

    5.times do
      break if log.size >= pairs.size

      selector.select(1)
    end
    selector.select(0)
    assert_equal pairs.size.times.map { |index| [index, IO::READABLE] }, log.sort_by(&:first)
  end

  # --- interrupted waits --------------------------------------------------------

  def test_exception_raised_into_io_wait_leaves_no_stale_resume
    [:selector_raise, :fiber_raise].each do |how|
      input, output = pipe
      log = []
      fiber = waiting_fiber(input, IO::READABLE, log)
      fiber.transfer
      selector.select(0)

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
    fiber = waiting_fiber(input, IO::READABLE, log)
    fiber.transfer
    selector.select(0) # make sure the wait is really registered
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
      fiber = waiting_fiber(input, IO::READABLE, log)
      fiber.transfer
      selector.select(0)

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

  # --- argument checking ------------------------------------------------------

  def io_wait_error(io, events)
    fiber = Fiber.new do
      selector.io_wait(Fiber.current, io, events)
      :no_error
    rescue Exception => error # rubocop:disable Lint/RescueException
      error
    end
    result = fiber.transfer
    if fiber.alive?
      # The call parked instead of raising; release the fiber.
      fiber.raise(Boom) rescue nil
      flunk "io_wait(#{io.inspect}, #{events.inspect}) parked instead of raising"
    end
    result
  end

  def test_io_wait_with_a_non_io_raises_type_error
    assert_kind_of TypeError, io_wait_error("not an io", IO::READABLE)
    assert_kind_of TypeError, io_wait_error(Object.new, IO::READABLE)
    assert_kind_of TypeError, io_wait_error(nil, IO::READABLE)
    refute selector.ready?
  end

  def test_io_wait_with_non_integer_events_raises_type_error
    input, _output = pipe
    assert_kind_of TypeError, io_wait_error(input, "1")
    assert_kind_of TypeError, io_wait_error(input, nil)
    assert_kind_of TypeError, io_wait_error(input, Object.new)
    refute selector.ready?
  end

  def test_io_wait_on_a_closed_io_raises_io_error
    input, _output = pipe
    input.close
    assert_kind_of IOError, io_wait_error(input, IO::READABLE)
  end

  def test_resume_with_a_non_fiber_raises_type_error
    [42, nil, "fiber", Object.new].each do |bogus|
      error = assert_raises(TypeError, ArgumentError) { selector.resume(bogus) }
      refute_nil error
      refute selector.ready?, "resume(#{bogus.inspect}) left the caller on the ready queue"
    end
    assert_kind_of Integer, selector.select(0)
  end

  # --- close and lifecycle -----------------------------------------------------

  def test_can_create_several_selectors
    selectors = 8.times.map { make_selector(Fiber.current) }
    selectors.each { |other| assert_kind_of Integer, other.select(0) }
    selectors.each(&:close)
    assert(selectors.all?(&:closed?))
  end

  # The native and Select selectors ignore a second close; io-event's Debug
  # wrapper reports it (RuntimeError "already closed"), and so does ours.
  def test_close_is_idempotent
    refute selector.closed?
    selector.close
    assert selector.closed?
    if defined?(IO::Event::Debug::Selector) && selector.is_a?(IO::Event::Debug::Selector)
      assert_raises(RuntimeError) { selector.close }
    else
      selector.close
    end
    assert selector.closed?
  end

  def test_close_with_a_fiber_parked_in_io_wait
    input, output = pipe
    log = []
    waiting_fiber(input, IO::READABLE, log).transfer
    selector.select(0)
    selector.close
    assert selector.closed?
    output.write("x")
    assert_empty log, "closing must not resume parked fibers by itself"
  end

  def test_forked_child_sees_closed
    selector.select(0)
    refute selector.closed?

    pid = fork do
      code =
        begin
          selector.closed? ? 0 : 1
        rescue Exception # rubocop:disable Lint/RescueException
          2
        end
      exit!(code)
    end
    _, status = Process.waitpid2(pid)
    assert_equal 0, status.exitstatus, "the child did not see closed? == true (1) or raised (2)"
    refute selector.closed?, "the parent's selector stays open"
    assert_kind_of Integer, selector.select(0)
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
