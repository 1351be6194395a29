# frozen_string_literal: true

# The buffered I/O operations of every selector, called directly:
# io_read, io_write, io_pread, io_pwrite, io_close. The test method is the loop
# fiber; each operation runs in its own fiber and the test drives select.
# Contract: PROTOCOL.md, "Every selector instance".

require_relative "../../../test_helper"
require_relative "../../../support/selector_variants"

module IOContract
  include SelectorVariants
  include SelectorDriver

  MESSAGE = "Hello World"
  EAGAIN = -Errno::EAGAIN::Errno
  EINVAL = -Errno::EINVAL::Errno
  EBADF = -Errno::EBADF::Errno

  def setup
    super
    require_selector_method(:io_read, :io_write)
  end

  # Read `message` through io_read from `input` while another fiber writes it
  # with io_write to `output`.
  def assert_message_round_trip(input, output, message = MESSAGE)
    read_result = write_result = nil
    read_buffer = IO::Buffer.new(64)

    reader = start do
      read_result = selector.io_read(Fiber.current, input, read_buffer, message.bytesize)
    end
    writer = start do
      write_result = selector.io_write(Fiber.current, output, buffer_with(message), message.bytesize)
    end

    drive_fibers(reader, writer)

    assert_equal message.bytesize, write_result
    assert_equal message.bytesize, read_result
    assert_equal message, read_buffer.get_string(0, read_result)
  end

  # -- messages --------------------------------------------------------------

  def test_read_and_write_a_message_on_a_pipe
    input, output = pipe
    assert_message_round_trip(input, output)
  end

  def test_read_and_write_a_message_on_a_socketpair
    local, remote = socket_pair
    assert_message_round_trip(local, remote)
    assert_message_round_trip(remote, local, "and back again")
  end

  # io_read of MESSAGE.bytesize bytes from a socket that has been sent only
  # `first` (maybe nothing) waits; the rest of MESSAGE completes it.
  def assert_read_waits_for_the_rest(first)
    local, remote = socket_pair
    buffer = IO::Buffer.new(64)
    result = nil

    reader = start { result = selector.io_read(Fiber.current, local, buffer, MESSAGE.bytesize) }
    remote.write(first) unless first.empty?
    settle
    assert reader.alive?, "io_read returned after #{first.bytesize} of #{MESSAGE.bytesize} bytes"
    assert_nil result

    remote.write(MESSAGE[first.bytesize..])
    drive_fibers(reader)

    assert_equal MESSAGE.bytesize, result
    assert_equal MESSAGE, buffer.get_string(0, result)
  end

  def test_read_waits_for_data_written_later
    assert_read_waits_for_the_rest("")
  end

  # -- length is the minimum --------------------------------------------------

  def test_partial_reads_continue_until_length_is_reached
    assert_read_waits_for_the_rest(MESSAGE[0, 5])
  end

  def test_read_returns_what_one_read_gives_beyond_length
    input, output = pipe
    output.write("x" * 40)
    buffer = IO::Buffer.new(64)
    result = run_op { selector.io_read(Fiber.current, input, buffer, 1) }

    # length 1 is a minimum: one read takes all 40 bytes that are there.
    assert_equal 40, result
    assert_equal "x" * 40, buffer.get_string(0, 40)
  end

  def test_read_is_bounded_by_the_buffer
    input, output = pipe
    output.write("y" * 128)
    buffer = IO::Buffer.new(64)
    result = run_op { selector.io_read(Fiber.current, input, buffer, 1) }

    assert_equal 64, result
    assert_equal "y" * 64, input.read_nonblock(1024), "the rest stays in the pipe"
  end

  def test_read_and_write_at_a_buffer_offset
    input, output = pipe
    write_buffer = IO::Buffer.new(128)
    write_buffer.set_string("a" * 64 + "b" * 64)
    read_buffer = IO::Buffer.new(128)
    read_result = write_result = nil

    reader = start { read_result = selector.io_read(Fiber.current, input, read_buffer, 1, 64) }
    writer = start { write_result = selector.io_write(Fiber.current, output, write_buffer, 64, 64) }
    drive_fibers(reader, writer)

    assert_equal 64, write_result, "write from offset 64 to the end"
    assert_equal 64, read_result, "read from offset 64 to the end"
    assert_equal "b" * 64, read_buffer.get_string(64, 64)
    assert_equal "\0" * 64, read_buffer.get_string(0, 64), "nothing written before the offset"
  end

  def test_stops_reading_once_enough_is_there
    local, remote = socket_pair
    buffer = IO::Buffer.new(64)
    result = nil

    reader = start { result = selector.io_read(Fiber.current, local, buffer, MESSAGE.bytesize) }
    remote.write(MESSAGE)
    drive_fibers(reader)
    assert_equal MESSAGE.bytesize, result

    # Nothing reads or waits on the socket any more: more data stays there and
    # select goes quiet.
    remote.write("second")
    quiet = 5.times.any? { selector.select(0).zero? }
    assert quiet, "select kept reporting events after the read completed"
    assert_equal "second", local.read_nonblock(64)
  end

  def test_eof_returns_the_total_so_far
    input, output = pipe
    buffer = IO::Buffer.new(64)
    result = nil

    reader = start { result = selector.io_read(Fiber.current, input, buffer, 20) }
    output.write("hello")
    settle
    assert reader.alive?, "io_read returned with 5 of 20 bytes before EOF"
    output.close
    drive_fibers(reader)

    assert_equal 5, result
    assert_equal "hello", buffer.get_string(0, 5)

    again = nil
    drive_fibers(start { again = selector.io_read(Fiber.current, input, buffer, 1) })
    assert_equal 0, again, "a read at EOF returns 0"
  end

  # -- length == 0: one non-blocking attempt ----------------------------------

  def test_zero_length_read_with_input_returns_what_is_there
    input, output = pipe
    output.write("hello")
    buffer = IO::Buffer.new(64)
    result = nil

    drive_fibers(start { result = selector.io_read(Fiber.current, input, buffer, 0) })

    assert_equal 5, result
    assert_equal "hello", buffer.get_string(0, 5)
  end

  def test_zero_length_read_without_input_returns_eagain
    input, output = pipe
    buffer = IO::Buffer.new(64)
    result = nil

    drive_fibers(start { result = selector.io_read(Fiber.current, input, buffer, 0) }, timeout: 2)

    assert_equal EAGAIN, result
    assert zeroed?(buffer)

    # Nothing was left behind to consume later data.
    output.write("later")
    settle
    assert_equal "later", input.read_nonblock(64)
  end

  def test_zero_length_write
    input, output = pipe
    buffer = IO::Buffer.new(1).slice(0, 0)
    result = nil

    drive_fibers(start { result = selector.io_write(Fiber.current, output, buffer, 0) })

    assert_equal 0, result
    assert_raises(IO::WaitReadable) { input.read_nonblock(1) }
  ensure
    # Ruby 3.1 crashes ([BUG] object allocation during garbage collection
    # phase) when it sweeps a slice whose parent's slot was already reused:
    # free the slice explicitly so the sweep has nothing to do.
    buffer&.free
  end

  def test_zero_length_write_of_a_full_buffer_writes_once
    input, output = pipe
    result = nil

    drive_fibers(start { result = selector.io_write(Fiber.current, output, buffer_with("abc"), 0) })

    assert_equal 3, result
    assert_equal "abc", input.read_nonblock(64)
  end

  # A descriptor without O_NONBLOCK (inherited, or made blocking by its
  # owner): an attempt that may not wait still does not, and the native
  # selectors leave the descriptor's flags as they found them (they belong to
  # the open file, which other processes may share).
  def test_zero_length_read_on_a_blocking_pipe_returns_eagain
    require "io/nonblock"
    input, output = pipe
    input.nonblock = false
    buffer = IO::Buffer.new(64)
    result = nil

    drive_fibers(start { result = selector.io_read(Fiber.current, input, buffer, 0) }, timeout: 2)

    assert_equal EAGAIN, result
    assert zeroed?(buffer)
    refute input.nonblock?, "the read end's flags were left alone" unless selector_variant.class_name == "Select"
    output.write("x")
    drive_fibers(start { result = selector.io_read(Fiber.current, input, buffer, 0) }, timeout: 2)
    assert_equal 1, result
  end

  def test_zero_length_write_to_a_full_blocking_pipe_returns_eagain
    require "io/nonblock"
    input, output = pipe
    filled = 0
    while (written = output.write_nonblock("x" * 4096, exception: false)).is_a?(Integer)
      filled += written
    end
    output.nonblock = false
    result = nil

    drive_fibers(start { result = selector.io_write(Fiber.current, output, buffer_with("more"), 0) }, timeout: 2)

    assert_equal EAGAIN, result
    refute output.nonblock?, "the write end's flags were left alone" unless selector_variant.class_name == "Select"
    assert_equal filled, input.read_nonblock(filled + 64).bytesize, "nothing was written past the full pipe"
  end

  # A write to a SOCK_SEQPACKET socket is one message (write(2) adds MSG_EOR):
  # two writes are two reads on the other end, on every route.
  def test_writes_to_a_seqpacket_socket_keep_their_boundaries
    local, remote = UNIXSocket.pair(:SEQPACKET)
    @tracked_ios.push(local, remote)
    results = []

    drive_fibers(start do
      results << selector.io_write(Fiber.current, local, buffer_with("one"), 3)
      results << selector.io_write(Fiber.current, local, buffer_with("two!"), 0)
    end)

    assert_equal [3, 4], results
    assert_equal "one", remote.recv(64)
    assert_equal "two!", remote.recv(64)
  end

  # -- offsets at and beyond the end of the buffer ----------------------------

  def test_read_offsets_at_and_past_the_end_of_the_buffer
    input, output = pipe
    output.write("data")
    buffer = IO::Buffer.new(8)

    assert_equal EINVAL, run_op { selector.io_read(Fiber.current, input, buffer, 1, 9) }
    assert_equal 0, run_op { selector.io_read(Fiber.current, input, buffer, 0, 8) }
    assert_equal 0, run_op { selector.io_read(Fiber.current, input, buffer, 1, 8) }, "no room left: 0 whatever the length"
    assert zeroed?(buffer)
    assert_equal "data", input.read_nonblock(64), "neither call consumed input"
  end

  def test_write_offsets_at_and_past_the_end_of_the_buffer
    input, output = pipe
    buffer = buffer_with("12345678")

    assert_equal EINVAL, run_op { selector.io_write(Fiber.current, output, buffer, 1, 9) }
    assert_equal 0, run_op { selector.io_write(Fiber.current, output, buffer, 0, 8) }
    assert_equal 0, run_op { selector.io_write(Fiber.current, output, buffer, 1, 8) }, "nothing left: 0 whatever the length"
    assert_raises(IO::WaitReadable, "nothing was written") { input.read_nonblock(1) }
  end

  def test_pread_offsets_at_and_past_the_end_of_the_buffer
    require_selector_method(:io_pread)
    file = tempfile_with("0123456789abcdef")
    buffer = IO::Buffer.new(8)

    assert_equal EINVAL, run_op { selector.io_pread(Fiber.current, file, buffer, 0, 1, 9) }
    assert_equal 0, run_op { selector.io_pread(Fiber.current, file, buffer, 0, 0, 8) }
    assert zeroed?(buffer)
  end

  def test_pwrite_offsets_at_and_past_the_end_of_the_buffer
    require_selector_method(:io_pwrite)
    file = tempfile_with("0123456789abcdef")
    buffer = buffer_with("XXXXXXXX")

    assert_equal EINVAL, run_op { selector.io_pwrite(Fiber.current, file, buffer, 0, 1, 9) }
    assert_equal 0, run_op { selector.io_pwrite(Fiber.current, file, buffer, 0, 0, 8) }
    assert_equal "0123456789abcdef", File.binread(file.path)
  end

  # -- files -------------------------------------------------------------------

  def test_read_a_file_from_its_current_position
    file = tempfile_with("0123456789abcdef")
    file.sysseek(4)
    buffer = IO::Buffer.new(64)

    result = run_op { selector.io_read(Fiber.current, file, buffer, 0) }
    assert_equal 12, result
    assert_equal "456789abcdef", buffer.get_string(0, 12)

    assert_equal 0, run_op { selector.io_read(Fiber.current, file, buffer, 0) }, "the read advanced the position to EOF"
  end

  def test_write_a_file_at_its_current_position
    file = tempfile_with("0123456789abcdef")
    file.sysseek(10)

    assert_equal 3, run_op { selector.io_write(Fiber.current, file, buffer_with("XYZ"), 3) }
    assert_equal "0123456789XYZdef", File.binread(file.path)
  end

  def test_pread_at_given_file_offsets
    require_selector_method(:io_pread)
    file = tempfile_with("0123456789abcdef")

    buffer = IO::Buffer.new(6)
    assert_equal 6, run_op { selector.io_pread(Fiber.current, file, buffer, 4, 6, 0) }
    assert_equal "456789", buffer.get_string

    buffer = IO::Buffer.new(10)
    assert_equal 6, run_op { selector.io_pread(Fiber.current, file, buffer, 10, 6, 4) }
    assert_equal "\0\0\0\0abcdef", buffer.get_string, "read into the buffer at offset 4"

    buffer = IO::Buffer.new(64)
    assert_equal 3, run_op { selector.io_pread(Fiber.current, file, buffer, 13, 10, 0) }, "EOF returns the total so far"
    assert_equal "def", buffer.get_string(0, 3)

    assert_equal 0, file.sysseek(0, IO::SEEK_CUR), "pread does not move the file position"
  end

  def test_pwrite_at_a_file_offset
    require_selector_method(:io_pwrite)
    file = tempfile_with("0123456789abcdef")

    assert_equal 3, run_op { selector.io_pwrite(Fiber.current, file, buffer_with("XYZ"), 5, 3, 0) }
    assert_equal "01234XYZ89abcdef", File.binread(file.path)

    # From a buffer offset, past the end of the file.
    assert_equal 2, run_op { selector.io_pwrite(Fiber.current, file, buffer_with("..!?"), 16, 2, 2) }
    assert_equal "01234XYZ89abcdef!?", File.binread(file.path)

    assert_equal 0, file.sysseek(0, IO::SEEK_CUR), "pwrite does not move the file position"
  end

  # -- errors are results, not exceptions ---------------------------------------

  def test_writing_to_the_read_end_of_a_pipe_returns_ebadf
    input, output = pipe
    assert_equal EBADF, run_op { selector.io_write(Fiber.current, input, buffer_with("x" * 64), 64) }
  end

  def test_reading_from_the_write_end_of_a_pipe_returns_ebadf
    input, output = pipe
    assert_equal EBADF, run_op { selector.io_read(Fiber.current, output, IO::Buffer.new(64), 1) }
  end

  # -- flow control -------------------------------------------------------------

  def test_a_full_pipe_does_not_deadlock_the_writer
    input, output = pipe
    size = 1024 * 1024
    pattern = (0...256).map(&:chr).join.b
    data = pattern * (size / pattern.bytesize)
    received = +"".b
    write_result = nil

    writer = start { write_result = selector.io_write(Fiber.current, output, buffer_with(data), size) }
    assert writer.alive?, "a 1 MiB write cannot fit in a pipe: the writer must park"

    reader = start do
      buffer = IO::Buffer.new(64 * 1024)
      while received.bytesize < size
        count = selector.io_read(Fiber.current, input, buffer, 1)
        raise "io_read returned #{count}" unless count.positive?

        received << buffer.get_string(0, count)
      end
    end

    drive_fibers(writer, reader, timeout: 10)

    assert_equal size, write_result
    assert_equal size, received.bytesize
    assert received == data, "the bytes arrived in order and intact"
  end

  def test_writes_to_a_socket_resume_when_the_peer_reads
    local, remote = socket_pair
    size = 4 * 1024 * 1024
    data = "z" * size
    write_result = nil

    writer = start { write_result = selector.io_write(Fiber.current, local, buffer_with(data), size) }
    settle
    assert writer.alive?

    received = 0
    drive(timeout: 10) do
      begin
        received += remote.read_nonblock(1024 * 1024).bytesize
      rescue IO::WaitReadable
        nil
      end
      !writer.alive? && received >= size
    end
    assert_equal size, write_result
    assert_equal size, received
  end

  # -- io_close -------------------------------------------------------------

  def test_io_close_of_a_raw_descriptor
    require_selector_method(:io_close)
    descriptor = IO.sysopen("/dev/null")
    assert File.exist?("/proc/self/fd/#{descriptor}")

    # Closed when the call returns, not at some later select.
    assert_equal true, selector.io_close(descriptor)
    refute File.exist?("/proc/self/fd/#{descriptor}"), "fd #{descriptor} is still open after io_close"
  end

  def test_io_close_from_a_fiber
    require_selector_method(:io_close)
    descriptor = IO.sysopen("/dev/null")

    assert_equal true, run_op { selector.io_close(descriptor) }
    refute File.exist?("/proc/self/fd/#{descriptor}"), "fd #{descriptor} is still open after io_close"
  end
end

SelectorVariants.define("IOContract", IOContract, variants: SelectorVariants::PLAIN)
