# frozen_string_literal: true

require_relative "helpers"

module SelectorContract
  # io_wait on pipes and sockets, several waiters, and its argument checks.
  module IOWait
    include Helpers

    # --- io_wait ----------------------------------------------------------------

    # Parks a fiber in io_wait(io, events), runs the block (what makes `io`
    # ready, if anything), selects once and returns the fiber's log.
    def wait_once(io, events)
      log = []
      waiting_fiber(io, events, log).transfer
      yield if block_given?
      selector.select(1)
      log
    end

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
      assert_equal [[:io_wait, IO::READABLE]], wait_once(local, IO::READABLE) { remote.write("hello") }
    end

    def test_io_wait_writable_on_a_pipe
      _input, output = pipe
      assert_equal [[:io_wait, IO::WRITABLE]], wait_once(output, IO::WRITABLE)
    end

    def test_io_wait_writable_on_a_socket_pair
      local, _remote = socket_pair
      assert_equal [[:io_wait, IO::WRITABLE]], wait_once(local, IO::WRITABLE)
    end

    def test_io_wait_returns_only_the_requested_bits
      local, remote = socket_pair
      remote.write("pending data")
      both = IO::READABLE | IO::WRITABLE

      # Readable and writable, but only writability was asked for.
      assert_equal [[:io_wait, IO::WRITABLE]], wait_once(local, IO::WRITABLE)
      # Only readability asked for.
      assert_equal [[:io_wait, IO::READABLE]], wait_once(local, IO::READABLE)
      # Both asked, both ready.
      assert_equal [[:io_wait, both]], wait_once(local, both)
      # Both asked, only writability ready.
      other, _peer = socket_pair
      assert_equal [[:io_wait, IO::WRITABLE]], wait_once(other, both)
    end

    def test_io_wait_reports_hangup_as_readable
      input, output = pipe
      log = []
      parked_waiter(input, IO::READABLE, log)
      assert_empty log

      output.close
      selector.select(1)
      assert_equal [[:io_wait, IO::READABLE]], log
      assert_equal "", input.read, "the reader sees EOF"
    end

    def test_io_wait_reports_peer_shutdown_as_readable
      local, remote = socket_pair
      assert_equal [[:io_wait, IO::READABLE]], wait_once(local, IO::READABLE) { remote.close }
    end

    def test_io_wait_on_an_already_ready_io
      input, output = pipe
      output.write("already there")
      assert_equal [[:io_wait, IO::READABLE]], wait_once(input, IO::READABLE)
    end

    def test_io_wait_readable_and_writable_from_two_fibers
      local, remote = socket_pair
      log = wait_together([local, IO::READABLE, :reader], [local, IO::WRITABLE, :writer]) { remote.write("hello") }
      assert_equal [[:reader, IO::READABLE], [:writer, IO::WRITABLE]], log
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
      log = wait_together([input, IO::READABLE, :first], [input, IO::READABLE, :second]) { output.write("x") }
      assert_equal [[:first, IO::READABLE], [:second, IO::READABLE]], log
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
      log = wait_together([input, IO::READABLE, :original], [alias_io, IO::READABLE, :alias]) { output.write("x") }
      assert_equal [[:alias, IO::READABLE], [:original, IO::READABLE]], log
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

    # --- argument checking ------------------------------------------------------

    # What io_wait raised, run in a new fiber; flunks if it parked instead.
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
  end
end
