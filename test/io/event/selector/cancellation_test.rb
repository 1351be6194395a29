# frozen_string_literal: true

# What happens to an operation whose fiber leaves it early: an exception raised
# into the fiber, or a resume without an event. The kernel must never write into
# a buffer after the call that lent it has returned, and no stale resume may
# reach the fiber later (PROTOCOL.md "io_wait", "Memory and GC"; STYLE.md 3.2).
# Also: many parked fibers made ready at once (SQ full, CQ overflow).

require_relative "../../../test_helper"
require_relative "../../../support/selector_variants"

module CancellationContract
  include SelectorDriver

  class Interrupted < StandardError; end

  EAGAIN = -Errno::EAGAIN::Errno

  # A fiber that raises Interrupted into `target`, through the selector (so the
  # raiser is put on the ready queue, as a scheduler's Fiber#raise would be).
  def raise_from_another_fiber(target)
    start { selector.raise(target, Interrupted, "stop waiting") }
  end

  # -- io_read interrupted ---------------------------------------------------------

  def interrupted_read(input, buffer)
    outcome = nil
    reader = start do
      selector.io_read(Fiber.current, input, buffer, 1)
      outcome = :returned
    rescue Interrupted
      outcome = :interrupted
    end
    assert reader.alive?, "io_read on an empty pipe must park"

    raiser = raise_from_another_fiber(reader)
    drive_fibers(reader, raiser)
    assert_equal :interrupted, outcome
  end

  def test_interrupted_read_leaves_the_buffer_alone_and_the_data_in_the_pipe
    require_selector_method(:io_read)
    input, output = pipe
    buffer = IO::Buffer.new(16)

    interrupted_read(input, buffer)

    output.write("late data")
    settle(5)

    assert zeroed?(buffer), "the kernel wrote into the buffer after io_read was interrupted: #{buffer.get_string.inspect}"
    assert_equal "late data", input.read_nonblock(64)
  end

  # close with reads and waits in flight: nothing is written into the buffers
  # afterwards, no descriptor is left behind, and the parked fibers stay parked.
  def test_close_with_operations_in_flight
    require_selector_method(:io_read)
    fds_before = Dir.children("/proc/self/fd").sort
    pipes = Array.new(4) { IO.pipe }
    buffers = Array.new(4) { IO::Buffer.new(16) }
    resumed = []
    fibers = pipes.each_with_index.map do |(input, _), index|
      start do
        if index.even?
          selector.io_read(Fiber.current, input, buffers[index], 1)
        else
          selector.io_wait(Fiber.current, input, IO::READABLE)
        end
        resumed << index
      end
    end
    settle(2)
    assert fibers.all?(&:alive?), "every operation parks"

    selector.close
    assert selector.closed?
    pipes.each { |_, output| output.write("after close") }
    sleep 0.05

    assert_empty resumed, "a fiber parked on a closed selector was resumed"
    buffers.each_with_index do |buffer, index|
      assert zeroed?(buffer), "buffer #{index} was written after close: #{buffer.get_string.inspect}"
    end
    pipes.each do |input, _|
      assert_equal "after close", input.read_nonblock(64), "the data is still in the pipe"
    end
    pipes.each { |pair| pair.each(&:close) }
    # The selector's own descriptors are gone too, so compare what is new.
    assert_empty Dir.children("/proc/self/fd") - fds_before, "close left a descriptor behind"
  ensure
    pipes&.each { |pair| pair.each { |io| io.close unless io.closed? } }
  end

  def test_a_read_after_an_interrupted_read_gets_the_data
    require_selector_method(:io_read)
    input, output = pipe
    first = IO::Buffer.new(16)

    interrupted_read(input, first)

    second = IO::Buffer.new(16)
    result = nil
    reader = start { result = selector.io_read(Fiber.current, input, second, 4) }
    output.write("late")
    drive_fibers(reader)
    settle

    assert_equal 4, result
    assert_equal "late", second.get_string(0, 4)
    assert zeroed?(first), "the interrupted read's buffer was written: #{first.get_string.inspect}"
  end

  def test_interrupted_reads_on_a_socket_repeatedly
    require_selector_method(:io_read)
    local, remote = socket_pair
    buffers = Array.new(scaled(20, 4)) { IO::Buffer.new(16) }

    buffers.each { |buffer| interrupted_read(local, buffer) }

    remote.write("after all of them")
    settle(5)
    assert buffers.all? { |buffer| zeroed?(buffer) }, "an interrupted read wrote into its buffer"
    assert_equal "after all of them", local.read_nonblock(64)
  end

  # -- io_wait interrupted ---------------------------------------------------------

  def test_io_wait_interrupted_100_times_then_the_io_becomes_ready
    local, remote = socket_pair
    times = scaled(100, 10)
    interrupted = 0
    parked = false
    stale = 0

    waiter = start do
      times.times do
        selector.io_wait(Fiber.current, local, IO::READABLE)
        flunk "io_wait returned without the socket being readable"
      rescue Interrupted
        interrupted += 1
        # and wait again at once, on the same descriptor
      end

      # Park without any operation: only a stale completion could resume us.
      parked = true
      selector.transfer
      stale += 1
    end

    times.times do |index|
      raise_fiber_errors
      assert waiter.alive?, "the waiter ended after #{interrupted} interruptions"
      selector.select(0) if index.odd?
      # Returns when the fiber parks again.
      waiter.raise(Interrupted)
    end
    raise_fiber_errors
    assert_equal times, interrupted
    assert parked

    remote.write("ready")
    settle(5)

    assert_equal 0, stale, "a cancelled io_wait resumed the fiber after the event arrived"
    assert waiter.alive?
    assert_equal "ready", local.read_nonblock(64)
  end

  def test_io_wait_resumed_without_an_event_returns_false_and_is_not_resumed_again
    local, remote = socket_pair
    results = []

    waiter = start do
      results << selector.io_wait(Fiber.current, local, IO::READABLE)
      selector.transfer
      results << :stale
    end

    waiter.transfer
    assert_equal [false], results, "io_wait resumed by hand returns false"

    remote.write("x")
    settle(5)
    assert_equal [false], results, "the cancelled wait resumed the fiber later"
  end

  # -- io_read resumed by hand ----------------------------------------------------

  # What io_read does when resumed without a completion is left to the
  # implementation: keep waiting, or return a result that claims no bytes. In
  # both cases the buffer is not written behind the caller's back and no data
  # is lost.
  def test_io_read_resumed_without_an_event
    require_selector_method(:io_read)
    input, output = pipe
    buffer = IO::Buffer.new(16)
    result = :none
    after = false

    reader = start do
      result = selector.io_read(Fiber.current, input, buffer, 4)
      after = true
      selector.transfer
    end

    reader.transfer
    settle

    if after
      assert_kind_of Integer, result
      # A negative errno; 0 would claim end of file and positive bytes that
      # never arrived.
      assert_operator result, :<, 0, "io_read resumed without data returned #{result}"
      assert zeroed?(buffer)

      output.write("data")
      settle(5)
      assert zeroed?(buffer), "the abandoned read wrote into the buffer: #{buffer.get_string.inspect}"
      assert_equal "data", input.read_nonblock(64)
    else
      # Still reading: the data written now must complete it.
      output.write("data")
      drive { after }
      assert_equal 4, result
      assert_equal "data", buffer.get_string(0, 4)
    end
  end

  # -- many parked fibers ready at once --------------------------------------------

  def raise_descriptor_limit(needed)
    soft, hard = Process.getrlimit(:NOFILE)
    return if soft >= needed

    skip "need #{needed} descriptors, hard limit is #{hard}" if hard != Process::RLIM_INFINITY && hard < needed
    Process.setrlimit(:NOFILE, needed, hard)
  end

  # 1000 is far more than URing's 64 SQ entries (filled while parking) and its
  # CQ (overflowed when all complete in one select); 40 under GC stress.
  def test_a_thousand_parked_fibers_made_ready_in_one_go_each_resume_once
    count = scaled(1000, 40)
    raise_descriptor_limit(2 * count + 256)
    pairs = Array.new(count) { UNIXSocket.pair }
    results = Array.new(count)
    resumed = Array.new(count, 0)
    stale = Array.new(count, 0)

    fibers = pairs.each_with_index.map do |(local, _), index|
      start do
        results[index] = selector.io_wait(Fiber.current, local, IO::READABLE)
        resumed[index] += 1
        selector.transfer # park with nothing pending
        stale[index] += 1
      end
    end
    settle(2, 0)
    assert_equal 0, resumed.sum, "no fiber may resume before its socket is readable"

    pairs.each { |_, remote| remote.write("!") }

    drive(timeout: 10) { resumed.sum >= count }
    settle(5)

    assert_equal [1], resumed.uniq, "every fiber resumes exactly once"
    assert_equal [IO::READABLE], results.uniq
    assert_equal 0, stale.sum, "a fiber was resumed again after its io_wait completed"

    fibers.each { |fiber| fiber.transfer if fiber.alive? }
    assert_equal count, stale.sum
  ensure
    pairs&.each { |pair| pair.each(&:close) }
  end

  def test_a_thousand_parked_reads_made_ready_in_one_go
    require_selector_method(:io_read)
    count = scaled(1000, 40)
    raise_descriptor_limit(2 * count + 256)
    pairs = Array.new(count) { UNIXSocket.pair }
    buffers = Array.new(count) { IO::Buffer.new(8) }
    results = Array.new(count)

    pairs.each_with_index.map do |(local, _), index|
      start { results[index] = selector.io_read(Fiber.current, local, buffers[index], 1) }
    end
    assert_equal [nil], results.uniq

    pairs.each_with_index { |(_, remote), index| remote.write(format("%07d", index)) }
    drive(timeout: 10) { results.none?(&:nil?) }

    assert_equal [7], results.uniq
    buffers.each_with_index do |buffer, index|
      assert_equal format("%07d", index), buffer.get_string(0, 7)
    end
  ensure
    pairs&.each { |pair| pair.each(&:close) }
  end
end

SelectorVariants.define("Cancellation", CancellationContract, variants: SelectorVariants::PLAIN)
