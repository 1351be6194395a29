# frozen_string_literal: true

# Issue 9, item 7 and "close with operations in flight": close releases every
# descriptor the selector made (the wake-up eventfd included) by itself, not
# later through the GC; with operations in flight it leaves no descriptor
# behind and nothing is written into a lent buffer after close returned; a
# descriptor number close released is never written to by a late wakeup.

require_relative "support"

module SoundnessClose
  include Soundness::Helpers

  def test_close_releases_every_descriptor_without_gc
    isolated(label: "500 selectors created and closed, GC disabled") do
      GC.start
      before = fd_list
      GC.disable
      500.times do |index|
        selector = new_selector(Fiber.current)
        # Every tenth one has blocked once (URing arms its wake-up read then).
        selector.select(index % 10 == 0 ? 0.0005 : 0)
        selector.close
      end
      after = fd_list
      GC.enable
      leaked = after - before
      assert_empty leaked, "close left #{leaked.size} descriptors open until GC (e.g. #{describe_fds(leaked.first(3)).inspect})"
      true
    end
  end

  def test_close_with_operations_in_flight
    isolated(label: "close with reads, writes, waits and process waits in flight") do
      GC.start
      GC.disable
      before = fd_list
      selector = new_selector(Fiber.current)
      pipes = Array.new(4) { IO.pipe }
      buffers = Array.new(2) { IO::Buffer.new(32) }
      resumed = []
      start = lambda do |name, &block|
        Fiber.new do
          block.call
          resumed << name
        rescue StandardError => error
          resumed << "#{name}: #{error.class}"
        end.transfer
      end
      start.call(:read0) { selector.io_read(Fiber.current, pipes[0][0], buffers[0], 4) }
      start.call(:read1) { selector.io_read(Fiber.current, pipes[1][0], buffers[1], 4, 8) }
      start.call(:wait) { selector.io_wait(Fiber.current, pipes[2][0], IO::READABLE) }
      begin
        loop { pipes[3][1].write_nonblock("x" * 65_536) }
      rescue IO::WaitWritable
        nil
      end
      secret = IO::Buffer.new(8)
      secret.set_string("SECRET!!")
      start.call(:write) { selector.io_write(Fiber.current, pipes[3][1], secret, 8) }
      child = Process.spawn("sleep", "0.3")
      start.call(:process) { selector.process_wait(Fiber.current, child, 0) }
      selector.select(0.001)
      step "five operations parked; closing"
      _, elapsed = timed { selector.close }
      assert selector.closed?
      assert_operator elapsed, :<, 1.0, "close with operations in flight took #{elapsed.round(2)}s"

      pipes.first(3).each { |_, output| output.write("late data") }
      sleep 0.05
      assert_empty resumed, "a fiber parked on a closed selector was resumed"
      buffers.each_with_index do |buffer, index|
        assert buffer.get_string.each_byte.all?(&:zero?), "buffer #{index} was written after close returned: #{buffer.get_string.inspect}"
      end
      assert_equal "late data", pipes[0][0].read_nonblock(64), "the data is still in the pipe"
      _, status = Process.wait2(child)
      assert_equal 0, status.exitstatus, "the closed selector consumed or disturbed the child's status"
      pipes.each { |pair| pair.each(&:close) }
      after = fd_list
      GC.enable
      assert_empty after - before, "close with operations in flight left descriptors open: #{describe_fds(after - before).inspect}"
      true
    end
  end

  # The eventfd (or self-pipe) number close releases is reused at once by a
  # socket pair; another thread keeps calling wakeup meanwhile. No byte may
  # arrive through the reused number.
  def test_no_wakeup_reaches_a_reused_descriptor
    isolated(label: "wakeup hammering across close and reuse") do
      stray = []
      30.times do
        selector = new_selector(Fiber.current)
        stop = false
        waker = Thread.new do
          until stop
            selector.wakeup
            Thread.pass
          end
        end
        3.times { selector.select(0.001) }
        selector.close
        pairs = Array.new(4) { Socket.pair(:UNIX, :STREAM) }
        sleep 0.002
        stop = true
        waker.join
        pairs.flatten.each do |socket|
          data = socket.read_nonblock(64, exception: false)
          stray << data.bytes if data.is_a?(String)
        end
        pairs.flatten.each(&:close)
      end
      assert_empty stray, "wakeup wrote into a descriptor that close had released and the process reused"
      true
    end
  end

  def test_close_is_idempotent_and_everything_after_it_raises_io_error
    isolated(label: "operations after close") do
      selector = new_selector(Fiber.current)
      selector.close
      input, output = IO.pipe
      buffer = IO::Buffer.new(8)
      operations = {
        "io_wait" => -> { selector.io_wait(Fiber.current, input, IO::READABLE) },
        "io_read" => -> { selector.io_read(Fiber.current, input, buffer, 1) },
        "io_write" => -> { selector.io_write(Fiber.current, output, buffer, 1) },
        "select(0)" => -> { selector.select(0) },
        "select(nil)" => -> { selector.select(nil) },
      }
      wrong = operations.filter_map do |name, operation|
        outcome = in_fiber(&operation)
        next if outcome[0] == :raised && outcome[1].is_a?(IOError)
        # The pure-Ruby selector answers select on a closed selector with 0.
        next if name.start_with?("select") && outcome == [:returned, 0] && !native?

        "#{name} #{describe_outcome(outcome)}"
      end
      assert_empty wrong, "operations on a closed selector must raise IOError"
      assert_equal false, selector.wakeup
      selector.close
      assert selector.closed?
      true
    end
  end
end

SelectorVariants.define("SoundnessClose", SoundnessClose, variants: SelectorVariants::PLAIN)
