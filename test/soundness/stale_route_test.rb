# frozen_string_literal: true

# The route memo (how attempts reach a descriptor, keyed by descriptor
# number and IO address) can be stale: IO#reopen keeps both, and an Integer
# descriptor is keyed by its number alone, so a close and a reuse of the
# number keeps it too. A regular file remembered for what is now an empty
# pipe must not make a `length == 0` read (one attempt, -EAGAIN when
# nothing is there) park until data arrives.

require_relative "support"

module SoundnessStaleRoute
  include Soundness::Helpers

  def child(code)
    reported, status, stderr = isolated_script(<<~RUBY, timeout: 15, label: "stale route")
      require "tmpdir"
      selector = IO::Event::Selector.const_get(#{selector_variant.class_name.inspect}).new(Fiber.current)
      path = File.join(Dir.mktmpdir, "f")
      File.binwrite(path, "filedata")
      buffer = IO::Buffer.new(16)
      # A length 0 io_read from a fiber; the result, or :pending after 1s.
      try_read = lambda do |io|
        result = :pending
        fiber = Fiber.new { result = selector.io_read(Fiber.current, io, buffer, 0); selector.transfer }
        fiber.transfer
        deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 1
        selector.select(0.05) while result == :pending && Process.clock_gettime(Process::CLOCK_MONOTONIC) < deadline
        result
      end
      #{code}
    RUBY
    refute status.signaled?, "child killed: #{status.inspect}: #{stderr}"
    assert status.success?, "child failed: #{stderr}"
    reported
  end

  def test_length_zero_read_of_an_empty_pipe_after_io_reopen_from_a_file
    result = child(<<~RUBY)
      io = File.open(path)
      try_read.call(io)                 # remembers File for (fd, io)
      input, output = IO.pipe
      io.reopen(input)
      report(try_read.call(io))
    RUBY
    assert_equal(-Errno::EAGAIN::Errno, result, "an empty pipe answers -EAGAIN at once")
  end

  def test_length_zero_read_of_an_empty_pipe_on_a_reused_integer_descriptor
    result = child(<<~RUBY)
      file = File.open(path)
      fd = file.fileno
      try_read.call(fd)                 # remembers File for (fd, Integer fd)
      file.close
      input, output = IO.pipe
      raise "number not reused" unless input.fileno == fd
      report(try_read.call(fd))
    RUBY
    assert_equal(-Errno::EAGAIN::Errno, result, "an empty pipe answers -EAGAIN at once")
  end
end

SelectorVariants.define("SoundnessStaleRoute", SoundnessStaleRoute,
                        variants: [SelectorVariants.fetch("URing"), SelectorVariants.fetch("EPoll")])
