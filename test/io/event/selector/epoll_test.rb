# frozen_string_literal: true

require_relative "../../../test_helper"
require_relative "../../../support/contract/helpers"

# How EPoll keeps registrations (DESIGN.md, EPoll): an entry stays in the
# kernel while its descriptor is waited on, level-triggered, and goes before
# the loop waits again once nobody waits; an entry we can no longer reach (its
# number closed behind our back while a dup or a forked child keeps the file)
# wakes the loop at most once before the set is rebuilt without it.
class EPollRegistrationTest < Minitest::Test
  include SelectorContract::Helpers

  def selector_variant
    SelectorVariants.fetch("EPoll")
  end

  # `select(duration)` blocks for its whole duration: no entry reports to
  # nobody. A stale entry may end one select early (then the set is rebuilt).
  def assert_quiet(duration = 0.05)
    times = Array.new(3) { elapsed { selector.select(duration) } }
    assert(times.last(2).all? { |time| time >= duration * 0.8 }, "select returned early: #{times.inspect}")
  end

  # Parks in io_wait and logs each result, as often as told.
  def waiter(io, events, log, times: 1, &after)
    Fiber.new do
      times.times do
        log << selector.io_wait(Fiber.current, io, events)
        after&.call(log)
      end
    end
  end

  def test_waiting_again_in_the_resumed_slice_sees_data_already_there
    input, output = socket_pair
    log = []
    fiber = waiter(input, IO::READABLE, log, times: 2) { log << input.read_nonblock(1) }
    fiber.transfer
    output.write("ab")
    selector.select(1)
    assert_equal [IO::READABLE, "a"], log, "one byte read, the fiber waits again with the other there"
    assert_operator elapsed { selector.select(1) }, :<, PROMPT
    assert_equal [IO::READABLE, "a", IO::READABLE, "b"], log
    refute_predicate fiber, :alive?
    assert_quiet
  end

  def test_a_ready_descriptor_nobody_waits_on_does_not_wake_the_loop
    input, output = pipe
    log = []
    waiter(input, IO::READABLE, log).transfer
    output.write("x")
    selector.select(1)
    assert_equal [IO::READABLE], log
    # Still readable, and nobody waits.
    assert_quiet
  end

  def test_a_cancelled_waiter_leaves_no_entry_behind
    input, output = pipe
    log = []
    fiber = Fiber.new do
      selector.io_wait(Fiber.current, input, IO::READABLE)
    rescue Boom
      log << :raised
    end
    fiber.transfer
    output.write("x")
    fiber.raise(Boom)
    assert_equal [:raised], log
    assert_quiet
  end

  def test_a_reader_and_a_writer_on_one_descriptor
    a, b = socket_pair
    log = []
    reader = waiter(a, IO::READABLE, log)
    writer = waiter(a, IO::WRITABLE, log)
    reader.transfer
    writer.transfer
    selector.select(1)
    assert_equal [IO::WRITABLE], log, "the socket is writable, not readable"
    # Only the reader waits now; the socket stays writable.
    assert_quiet
    b.write("x")
    selector.select(1)
    assert_equal [IO::WRITABLE, IO::READABLE], log
    refute_predicate reader, :alive?
  end

  def test_a_writer_that_waits_again_and_a_reader_stay_apart
    a, b = socket_pair
    log = []
    writer = waiter(a, IO::WRITABLE, log, times: 3)
    reader = waiter(a, IO::READABLE, log)
    reader.transfer
    writer.transfer
    3.times { selector.select(1) }
    assert_equal [IO::WRITABLE] * 3, log
    refute_predicate writer, :alive?
    b.write("x")
    selector.select(1)
    assert_equal [IO::WRITABLE] * 3 + [IO::READABLE], log
  end

  def test_two_io_objects_on_one_number_both_wake
    input, output = pipe
    alias_io = IO.for_fd(input.fileno, autoclose: false)
    log = wait_together([input, IO::READABLE, :original], [alias_io, IO::READABLE, :alias]) { output.write("x") }
    assert_equal [[:alias, IO::READABLE], [:original, IO::READABLE]], log
    assert_quiet
  ensure
    alias_io&.close
  end

  def test_a_dup_on_another_number_is_its_own_registration
    input, output = pipe
    copy = input.dup
    @tracked_ios << copy
    log = wait_together([input, IO::READABLE, :original], [copy, IO::READABLE, :copy]) { output.write("x") }
    assert_equal [[:copy, IO::READABLE], [:original, IO::READABLE]], log
    copy.close
    # The original still waits through its own entry.
    log = []
    waiter(input, IO::READABLE, log).transfer
    selector.select(1)
    assert_equal [IO::READABLE], log
  end

  # The fiber closes its IO with IO#close (not io_close) in the slice it was
  # resumed for, while `holder` keeps the file open, and the number is
  # reused at once by a new pipe it waits on.
  def close_and_reuse(holder)
    old_input, old_output = pipe
    number = old_input.fileno
    holder.call(old_input)
    log = []
    new_pipe = nil
    fiber = Fiber.new do
      log << selector.io_wait(Fiber.current, old_input, IO::READABLE)
      old_input.close
      new_pipe = IO.pipe
      @tracked_ios.concat(new_pipe)
      log << :reopened
      log << selector.io_wait(Fiber.current, new_pipe[0], IO::READABLE)
    end
    fiber.transfer
    old_output.write("x") # the old file stays readable: nobody reads it
    selector.select(1)
    assert_equal [IO::READABLE, :reopened], log
    skip "the new pipe did not reuse descriptor #{number}" unless new_pipe[0].fileno == number

    assert_quiet
    assert_equal [IO::READABLE, :reopened], log, "the old file's readiness never reaches the new waiter"
    new_pipe[1].write("y")
    selector.select(1)
    assert_equal [IO::READABLE, :reopened, IO::READABLE], log
    assert_quiet
  end

  def test_closed_and_reused_number_while_a_dup_keeps_the_file
    close_and_reuse(->(io) { @tracked_ios << io.dup })
  end

  def test_closed_and_reused_number_while_a_forked_child_keeps_the_file
    skip "fork is not available" unless Process.respond_to?(:fork)

    child = nil
    stop_input, stop_output = pipe
    close_and_reuse(lambda do |_io|
      # (The parent keeps its end of `stop_input` open: closing it would
      # free a number below the old pipe's, for the new pipe to take.)
      child = fork do
        stop_output.close
        stop_input.read # until the parent is done
        exit!(0)
      end
    end)
  ensure
    stop_output&.close unless stop_output&.closed?
    Process.wait(child) if child
  end

  def test_a_forked_child_never_changes_the_parents_registrations
    skip "fork is not available" unless Process.respond_to?(:fork)

    input, output = socket_pair
    log = []
    fiber = waiter(input, IO::READABLE, log, times: 3) { log << input.read_nonblock(1) }
    fiber.transfer
    output.write("a")
    selector.select(1)
    assert_equal [IO::READABLE, "a"], log
    # The fiber waits again through its kept entry; a child inherits it all.
    pid = fork do
      code = selector.closed? ? 0 : 1
      begin
        selector.select(0)
        code = 2
      rescue IOError
        nil
      end
      selector.close # closes only the child's copy of the epoll descriptor
      input.close
      output.write("b")
      exit!(code)
    end
    _, status = Process.wait2(pid)
    assert_equal 0, status.exitstatus
    selector.select(1)
    assert_equal [IO::READABLE, "a", IO::READABLE, "b"], log
    output.write("c")
    selector.select(1)
    assert_equal [IO::READABLE, "a", IO::READABLE, "b", IO::READABLE, "c"], log
  end

  # io_read(io, buffer, 2) with `io` in blocking mode: the block sees the
  # result while the fiber should be parked, then `peer` writes "hi".
  # Returns the result and the buffer.
  def blocking_read(io, peer)
    require "io/nonblock"
    io.nonblock = false
    buffer = IO::Buffer.new(4)
    result = nil
    Fiber.new { result = selector.io_read(Fiber.current, io, buffer, 2) }.transfer
    yield result
    peer.write("hi")
    selector.select(1)
    [result, buffer]
  end

  def test_io_read_on_a_blocking_socket_neither_blocks_nor_changes_its_flags
    a, b = socket_pair
    result, buffer = blocking_read(a, b) do |parked|
      assert_nil parked, "parked, not blocked"
      refute_predicate a, :nonblock?
    end
    assert_equal 2, result
    assert_equal "hi", buffer.get_string(0, 2)
    refute_predicate a, :nonblock?
  end

  def test_io_read_on_a_blocking_pipe_restores_its_flags
    input, output = pipe
    result, = blocking_read(input, output) { |parked| assert_nil parked }
    assert_equal 2, result
    refute_predicate input, :nonblock?
  end

  def test_io_write_and_io_read_keep_message_boundaries_on_a_seqpacket_socket
    a, b = UNIXSocket.pair(:SEQPACKET)
    @tracked_ios.push(a, b)
    results = []
    writer = Fiber.new do
      buffer = IO::Buffer.new(2)
      buffer.set_string("ab")
      results << selector.io_write(Fiber.current, a, buffer, 2)
      buffer.set_string("cd")
      results << selector.io_write(Fiber.current, a, buffer, 2)
    end
    writer.transfer
    buffer = IO::Buffer.new(8)
    reader = Fiber.new { results << selector.io_read(Fiber.current, b, buffer, 1) }
    reader.transfer
    assert_equal [2, 2, 2], results, "one message per read"
    assert_equal "ab", buffer.get_string(0, 2)
  end
end
