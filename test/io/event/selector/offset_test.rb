# frozen_string_literal: true

require_relative "../../../test_helper"
require_relative "../../../support/selector_variants"

# io_read/io_write (and the positional forms) at offset == buffer.size have
# nothing to move: they answer 0 without touching the IO, even a closed one.
# An offset beyond the end is -EINVAL. As io-event 1.19.4 does.
module BufferOffsetContract
  include SelectorDriver

  EINVAL = -Errno::EINVAL::Errno

  def closed_pipe
    input, output = IO.pipe
    input.close
    output.close
    [input, output]
  end

  def test_read_and_write_at_the_end_of_the_buffer_ignore_a_closed_io
    input, output = closed_pipe
    buffer = IO::Buffer.new(8)
    [0, 1, 8].each do |length|
      assert_equal 0, run_op { selector.io_read(Fiber.current, input, buffer, length, 8) }, "io_read length #{length}"
      assert_equal 0, run_op { selector.io_write(Fiber.current, output, buffer, length, 8) }, "io_write length #{length}"
    end
  end

  def test_read_at_the_end_leaves_the_data_in_the_pipe
    input, output = pipe
    output.write("abc")
    buffer = IO::Buffer.new(4)
    buffer.set_string("wxyz")
    assert_equal 0, run_op { selector.io_read(Fiber.current, input, buffer, 1, 4) }
    assert_equal "wxyz", buffer.get_string
    assert_equal "abc", input.read_nonblock(10)
  end

  def test_write_at_the_end_writes_nothing
    input, output = pipe
    buffer = IO::Buffer.new(4)
    buffer.set_string("wxyz")
    assert_equal 0, run_op { selector.io_write(Fiber.current, output, buffer, 1, 4) }
    assert_equal :wait_readable, input.read_nonblock(10, exception: false)
  end

  def test_an_offset_beyond_the_end_is_einval
    input, output = pipe
    output.write("abc")
    buffer = IO::Buffer.new(4)
    assert_equal EINVAL, run_op { selector.io_read(Fiber.current, input, buffer, 1, 5) }
    assert_equal EINVAL, run_op { selector.io_write(Fiber.current, output, buffer, 1, 5) }
    assert_equal "abc", input.read_nonblock(10), "the IO was touched"
  end

  def test_positional_transfers_at_the_end_ignore_a_closed_file
    require_selector_method(:io_pread, :io_pwrite)
    file = tempfile_with("0123456789")
    io = File.open(file.path, "r+")
    io.close
    buffer = IO::Buffer.new(4)
    assert_equal 0, run_op { selector.io_pread(Fiber.current, io, buffer, 2, 1, 4) }
    assert_equal 0, run_op { selector.io_pwrite(Fiber.current, io, buffer, 2, 1, 4) }
    assert_equal "0123456789", File.read(file.path)
  end
end

SelectorVariants.define("BufferOffset", BufferOffsetContract)
