# frozen_string_literal: true

# Issue 9, item 4: an IO::Buffer lent to the kernel stays valid and unfreeable
# until the last operation using it has completed. Ruby's buffer lock is a
# flag, not a count: two reads into one buffer must not let the first to
# finish unlock it while the second is still in flight. A buffer freed or
# resized by another fiber while a read is parked must raise; the kernel must
# never write into freed memory (checked with canary strings allocated where
# the freed buffer was).
#
# The native selectors lend the buffer for the whole call, so on them the
# buffer must stay locked. The pure-Ruby selector holds nothing in the kernel
# while parked, so on it only memory safety is asserted (no crash, a clear
# answer for the read whose buffer went away).

require_relative "support"

module SoundnessSharedBuffer
  include Soundness::Helpers

  # Small buffers are malloc'd, so freed memory is reused by the next
  # allocations of the same size: the canaries.
  SIZE = 64
  CANARY = "C" * (SIZE - 1)

  def locked_error?(error)
    error.is_a?(IO::Buffer::LockedError)
  end

  # Calls buffer.free/resize; returns nil if it raised LockedError, else a
  # description of what happened instead.
  def try_to(action, buffer)
    action == :free ? buffer.free : buffer.resize(SIZE * 4)
    "#{action} succeeded"
  rescue StandardError => error
    locked_error?(error) ? nil : "#{action} raised #{error.class}: #{error.message}"
  end

  def park_read(selector, input, buffer, offset, results, key)
    fiber = Fiber.new do
      results[key] = selector.io_read(Fiber.current, input, buffer, 4, offset)
    rescue StandardError => error
      results[key] = error
    end
    fiber.transfer
    fiber
  end

  # Fills memory that a freed SIZE-byte buffer may be reused for.
  def allocate_canaries
    Array.new(512) { "C" * (SIZE - 1) } # each a fresh malloc of SIZE bytes
  end

  def damaged_canaries(canaries)
    canaries.reject { |canary| canary == CANARY }.map { |canary| canary[0, 16] }
  end

  [true, false].each do |warm|
    define_method("test_two_reads_into_one_buffer_keep_it_locked_until_both_complete#{warm ? "" : "_cold"}") do
      two_reads_into_one_buffer(warm)
    end
  end

  def two_reads_into_one_buffer(warm)
    isolated(label: "two io_reads into one buffer#{warm ? "" : " (first lend)"}") do
      selector = lending_selector(warm: warm)
      (in1, out1), (in2, out2) = IO.pipe, IO.pipe
      buffer = IO::Buffer.new(SIZE)
      results = {}
      first = park_read(selector, in1, buffer, 0, results, :first)
      second = park_read(selector, in2, buffer, 8, results, :second)
      selector.select(0)
      assert first.alive? && second.alive?, "both reads park on empty pipes"

      out1.write("ONE!")
      assert drive_until(selector) { !first.alive? }, "the first read never completed"
      assert_equal 4, results[:first]
      step "first read done, second in flight"

      problems = []
      if native?
        problems << "the buffer was unlocked (locked? false) while the second io_read still uses it" unless buffer.locked?
        problems << try_to(:resize, buffer)
        freed = try_to(:free, buffer)
        problems << freed
        canaries = allocate_canaries if freed
      else
        try_to(:free, buffer)
        canaries = allocate_canaries
      end
      step "free/resize tried: #{problems.compact.inspect}"
      out2.write("CORRUPT!")
      assert drive_until(selector) { !second.alive? }, "the second read never completed"
      step "second read finished: #{results[:second].inspect}"
      if canaries
        damaged = damaged_canaries(canaries)
        assert_empty damaged, "the kernel wrote into freed memory (canary strings changed)"
      end
      assert_empty problems.compact, "buffer.free/resize must raise IO::Buffer::LockedError while an io_read is in flight"

      unless buffer.null?
        assert_equal [8, "ONE!", "CORRUPT!"], [results[:second], buffer.get_string(0, 4), buffer.get_string(8, 8)]
        refute buffer.locked?, "the buffer is still locked after both reads completed"
        buffer.free
      end
      selector.close
      true
    end
  end

  %i[free resize].each do |action|
    define_method("test_#{action}_by_another_fiber_while_a_read_is_parked_raises") do
      isolated(label: "#{action} by another fiber") do
        selector = lending_selector
        input, output = IO.pipe
        buffer = IO::Buffer.new(SIZE)
        results = {}
        reader = park_read(selector, input, buffer, 0, results, :read)
        selector.select(0)
        problem = nil
        canaries = nil
        Fiber.new do
          problem = try_to(action, buffer)
          canaries = allocate_canaries if problem && action == :free
        end.transfer
        step "#{action} tried: #{problem.inspect}"
        output.write("DATA-AFTER")
        assert drive_until(selector) { !reader.alive? }, "the parked read never completed"
        step "read finished: #{results[:read].inspect}"
        assert_empty damaged_canaries(canaries), "the kernel wrote into freed memory (canary strings changed)" if canaries
        if native?
          assert_nil problem, "buffer.#{action} while an io_read is in flight must raise IO::Buffer::LockedError"
          assert_equal [10, "DATA-AFTER"], [results[:read], buffer.get_string(0, 10)]
        else
          result = results[:read]
          assert result.is_a?(Integer) || Soundness::CLEAR_ERRORS.any? { |klass| result.is_a?(klass) } || result.is_a?(IO::Buffer::InvalidatedError) || result.is_a?(IO::Buffer::AccessError),
                 "the read whose buffer was #{action}d must answer clearly, got #{result.inspect}"
        end
        selector.close
        true
      end
    end
  end

  def test_read_and_write_sharing_one_buffer
    require_selector_method(:io_write)
    isolated(label: "io_read and io_write on one buffer") do
      selector = lending_selector
      (in1, out1), (in2, out2) = IO.pipe, IO.pipe
      # A full pipe, so the write parks with the buffer lent.
      fill_pipe(out2)
      buffer = IO::Buffer.new(SIZE)
      buffer.set_string("W" * SIZE)
      results = {}
      reader = park_read(selector, in1, buffer, 0, results, :read)
      writer = Fiber.new { results[:write] = selector.io_write(Fiber.current, out2, buffer, SIZE) }
      writer.transfer
      selector.select(0)
      out1.write("RRRR")
      assert drive_until(selector) { !reader.alive? }, "the read never completed"
      step "read done, write in flight"
      problem = try_to(:free, buffer) if native?
      canaries = allocate_canaries if problem
      assert drain_until_done(selector, in2, writer), "the write never completed"
      assert_empty damaged_canaries(canaries), "the kernel wrote into freed memory" if canaries
      assert_nil problem, "buffer.free while an io_write still uses the buffer must raise IO::Buffer::LockedError" if native?
      selector.close
      true
    end
  end

  # A slice's memory is its parent's: the parent must stay unfreeable and
  # unresizable while a read into the slice is in flight. (The child exits
  # with exit!, so Ruby 3.1's GC never frees the slice: that alone can crash
  # 3.1, whatever a selector does.)
  def test_the_buffer_a_slice_was_cut_from_stays_lent_with_it
    isolated(label: "io_read into a slice") do
      selector = new_selector(Fiber.current)
      input, output = IO.pipe
      parent = IO::Buffer.new(SIZE)
      slice = parent.slice(0, SIZE)
      results = {}
      reader = park_read(selector, input, slice, 0, results, :slice)
      selector.select(0)
      problems = []
      if native?
        problems << "the parent was not locked while a read into its slice was in flight" unless parent.locked?
        problems << try_to(:resize, parent)
        problems << try_to(:free, parent)
      end
      output.write("SLICED!!")
      assert drive_until(selector) { !reader.alive? }, "the read into the slice never completed"
      assert_empty problems.compact, "the slice's parent could be freed or resized under the kernel"
      assert_equal [8, "SLICED!!"], [results[:slice], parent.get_string(0, 8)]
      refute parent.locked?, "the parent is still locked after the read"
      selector.close
      true
    end
  end

  def test_buffer_is_unlocked_after_an_interrupted_read
    isolated(label: "interrupted read") do
      selector = lending_selector
      input, _output = IO.pipe
      buffer = IO::Buffer.new(SIZE)
      results = {}
      reader = park_read(selector, input, buffer, 0, results, :read)
      selector.select(0)
      reader.raise(RuntimeError, "stop")
      assert_kind_of RuntimeError, results[:read]
      refute buffer.locked?, "the buffer stays locked after its read was interrupted"
      buffer.free
      selector.close
      true
    end
  end
end

SelectorVariants.define("SoundnessSharedBuffer", SoundnessSharedBuffer, variants: SelectorVariants::PLAIN)
