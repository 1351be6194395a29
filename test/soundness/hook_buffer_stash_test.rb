# frozen_string_literal: true

# A buffer Ruby lends to a scheduler hook is locked by the C code that made
# it, which unlocks and frees it (and its caller frees or shrinks the memory
# behind it) as soon as the hook returns; when the hook returns is up to Ruby
# code. A scheduler that hands the hook's buffer to a call on another fiber,
# and then returns from the hook, must not leave that call (parked on a
# kernel read, or keeping the address for EPoll's retry) using memory that
# now belongs to a String Ruby has shrunk or freed. (A review found both
# backends doing so while such buffers counted as steady.)

require_relative "support"

module SoundnessHookBufferStash
  include Soundness::Helpers

  LENGTH = 4096 # a heap String (not embedded) behind the hook's buffer

  # The smallest scheduler Fiber.set_scheduler accepts; io_read starts another
  # fiber that reads into the hook's buffer, lets it park, and then returns.
  class StashingScheduler
    attr_reader :stashed, :outcome

    def initialize(selector, io)
      @selector = selector
      @io = io
      @stashed = nil
    end

    def io_read(_io, buffer, length, _offset = 0)
      hook = Fiber.current
      selector = @selector
      io = @io
      @stashed = Fiber.new do
        @outcome = [:returned, selector.io_read(Fiber.current, io, buffer, 1)]
      rescue StandardError => error
        @outcome = [:raised, error]
      end
      @selector.push(hook) # resumed by the next select
      @stashed.transfer # parks on `io`, which has no data
      buffer.size # "read" everything: the String keeps its full length
    end

    def io_wait(_io, _events, _timeout) = raise(NotImplementedError)
    def kernel_sleep(*) = raise(NotImplementedError)
    def block(*) = raise(NotImplementedError)
    def unblock(*) = nil
    def close = nil
  end

  # Run `hook_input.readpartial` in a fiber under StashingScheduler: the hook
  # hands its buffer to a fiber that parks reading `input`, then returns.
  # Returns the String readpartial answered and the stashed fiber.
  def stash_a_hook_buffer(selector, input)
    hook_input, = IO.pipe
    scheduler = StashingScheduler.new(selector, input)
    Fiber.set_scheduler(scheduler)
    result = nil
    reader = Fiber.new(blocking: false) { result = hook_input.readpartial(LENGTH) }
    reader.transfer # the hook parks the stashed fiber and comes back here
    assert drive_until(selector) { !reader.alive? }, "the hook never returned"
    assert_equal LENGTH, result.bytesize
    assert scheduler.stashed.alive?, "the stashed call waits for data"
    [result, scheduler.stashed]
  end

  def test_a_hook_buffer_handed_to_another_fiber_is_not_used_after_the_hook_returns
    isolated(label: "hook buffer stashed") do
      selector = lending_selector
      input, output = IO.pipe
      result, stashed = stash_a_hook_buffer(selector, input)
      scheduler = Fiber.scheduler
      snapshot = result.unpack("C16") # a copy: String#dup would share the memory
      # The IO call is over: `result` is an ordinary String, its memory Ruby's.
      output.write("Z")
      drive_until(selector, timeout: 1) { !stashed.alive? }
      step "stashed alive=#{stashed.alive?}, first bytes #{result.unpack('C4')} (were #{snapshot.first(4)})"
      assert_equal snapshot, result.unpack("C16"), "the kernel wrote into a String after the IO call that lent it returned"
      kind, value = scheduler.outcome
      assert_equal :raised, kind, "the stashed read of a freed hook buffer cannot succeed: #{value.inspect}"
      assert_equal "Z", input.read_nonblock(1), "the byte stays in the pipe"
      true
    end
  end

  def test_a_hook_buffer_handed_to_another_fiber_never_writes_freed_memory
    isolated(label: "hook buffer stashed, String freed") do
      selector = lending_selector
      input, output = IO.pipe
      result, stashed = stash_a_hook_buffer(selector, input)
      result.clear # frees the String's heap memory, the hook buffer's base
      victims = Array.new(2000) { "C" * (LENGTH - 1) }
      output.write("Z" * 64)
      drive_until(selector, timeout: 1) { !stashed.alive? }
      # Whatever reused the memory is damaged: a victim String, or the Array's
      # own element storage (a VALUE overwritten with "ZZZZZZZZ" reads as a Float).
      damaged = victims.count { |victim| !victim.is_a?(String) || victim.include?("Z") }
      step "stashed alive=#{stashed.alive?}, damaged #{damaged}"
      assert_equal 0, damaged, "the read wrote into freed memory: #{damaged} victim(s) damaged"
      true
    end
  end
end

SelectorVariants.define("SoundnessHookBufferStash", SoundnessHookBufferStash,
                        variants: SelectorVariants::NATIVE)
