# frozen_string_literal: true

# A buffer whose owner locked it (`IO::Buffer#locked { }` in another fiber)
# can be unlocked, then freed or resized, while one of our calls that uses it
# waits: that block ends whenever its fiber runs again, and Ruby's lock is a
# flag we cannot hold for it. Such bytes must never be in the kernel's hands
# (URing's op) or kept by a call (EPoll's retry) across a fiber switch; a
# call that waits looks at the buffer again afterwards, taking the lock if
# the owner has let go, and raises if the buffer is gone. (Found by a review:
# the parked read used to write into the freed memory, and into Strings that
# had reused it.)

require_relative "support"

module SoundnessOwnerUnlock
  include Soundness::Helpers

  SIZE = 200 # malloc'd (IO::Buffer::INTERNAL), the size class of the victims

  # Start the call the block makes (a read or write with `buffer`) in a fiber
  # while the buffer is locked by its owner, and end the owner's block while
  # the call waits. Returns the fiber and a way to ask how the call ended.
  def park_inside_owners_lock(buffer)
    outcome = nil
    worker = Fiber.new do
      outcome = begin
        [:returned, yield(worker)]
      rescue StandardError => error
        [:raised, error]
      end
    end
    buffer.locked { worker.transfer }
    assert worker.alive?, "the call should wait (nothing to read, or no room to write)"
    refute buffer.locked?, "the owner's block has ended"
    [worker, -> { outcome }]
  end

  def test_a_read_waiting_past_the_owners_lock_never_writes_freed_memory
    isolated(label: "read, owner frees") do
      selector = lending_selector
      input, output = IO.pipe
      buffer = IO::Buffer.new(SIZE)
      worker, outcome = park_inside_owners_lock(buffer) { |fiber| selector.io_read(fiber, input, buffer, 1) }
      buffer.free
      victims = Array.new(2000) { "C" * (SIZE - 1) }
      output.write("Z" * SIZE)
      assert drive_until(selector) { !worker.alive? }, "the read never finished"
      damaged = victims.count { |victim| victim.include?("Z") }
      step "outcome #{outcome.call.inspect}, damaged #{damaged}"
      assert_equal 0, damaged, "the read wrote into freed memory reused by #{damaged} String(s)"
      kind, value = outcome.call
      assert_equal :raised, kind, "a read into a freed buffer cannot succeed: #{value.inspect}"
      # Ruby's checked accessor raises for the freed buffer (AllocationError).
      assert [IOError, IO::Buffer::AllocationError].any? { |kind| value.is_a?(kind) }, value.inspect
      assert_equal "Z" * SIZE, input.read_nonblock(SIZE), "the bytes stay in the pipe"
      selector.close
      true
    end
  end

  def test_a_read_waiting_past_the_owners_lock_takes_the_lock_and_fills_the_buffer
    isolated(label: "read, owner lets go") do
      selector = lending_selector
      input, output = IO.pipe
      buffer = IO::Buffer.new(SIZE)
      worker, outcome = park_inside_owners_lock(buffer) { |fiber| selector.io_read(fiber, input, buffer, 1) }
      output.write("hello")
      assert drive_until(selector) { !worker.alive? }, "the read never finished"
      assert_equal [:returned, 5], outcome.call
      assert_equal "hello", buffer.get_string(0, 5)
      refute buffer.locked?, "the lock taken for the call is given back"
      buffer.free
      selector.close
      true
    end
  end

  def test_a_write_waiting_past_the_owners_lock_never_reads_freed_memory
    isolated(label: "write, owner resizes") do
      selector = lending_selector
      input, output = IO.pipe
      loop { break unless output.write_nonblock("x" * 65_536, exception: false).is_a?(Integer) }
      buffer = IO::Buffer.new(SIZE)
      buffer.set_string("W" * SIZE)
      worker, outcome = park_inside_owners_lock(buffer) { |fiber| selector.io_write(fiber, output, buffer, SIZE) }
      buffer.resize(16)
      drained = +""
      assert drive_until(selector) {
        drained << input.read_nonblock(1 << 20, exception: false).then { |chunk| chunk.is_a?(String) ? chunk : "" }
        !worker.alive?
      }, "the write never finished"
      drained << input.read_nonblock(1 << 20, exception: false).then { |chunk| chunk.is_a?(String) ? chunk : "" }
      step "outcome #{outcome.call.inspect}"
      kind, value = outcome.call
      assert_equal :returned, kind, value.inspect
      # The buffer shrank to 16 bytes before anything was written: the call
      # writes what it now holds, never bytes from past its end.
      assert_equal 16, value
      assert_equal "W" * 16, drained.delete("x")
      selector.close
      true
    end
  end
end

# The pure-Ruby Select selector lends nothing to the kernel.
SelectorVariants.define("SoundnessOwnerUnlock", SoundnessOwnerUnlock,
                        variants: SelectorVariants::NATIVE)
