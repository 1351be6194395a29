# frozen_string_literal: true

# Bytes that are not steady (a buffer locked by Ruby code) on a descriptor
# that refuses RWF_NOWAIT (-EOPNOTSUPP: a pty here) must not wait in the
# kernel with the GVL held: no other thread would run (the one that writes),
# and not even SIGTERM would end the process. (A review found URing doing so
# when such bytes got the op that may wait, completed inline.)

require_relative "support"
require "pty"
require "io/console"

module SoundnessNotSteadyTty
  include Soundness::Helpers

  def test_a_read_into_a_locked_buffer_from_a_pty_lets_other_threads_run
    isolated(label: "not steady, pty", timeout: 5) do
      selector = lending_selector
      master, slave = PTY.open
      slave.raw!
      buffer = IO::Buffer.new(64)
      writer = Thread.new { sleep 0.3; master.write("hi") }
      outcome = nil
      worker = Fiber.new do
        outcome = begin
          [:returned, selector.io_read(worker, slave, buffer, 1)]
        rescue StandardError => error
          [:raised, error]
        end
      end
      step "reading"
      buffer.locked { worker.transfer }
      step "the read waits or has finished: #{outcome.inspect}"
      assert drive_until(selector) { !worker.alive? }, "the read never finished"
      writer.join
      assert_equal [:returned, 2], outcome
      true
    end
  end
end

SelectorVariants.define("SoundnessNotSteadyTty", SoundnessNotSteadyTty,
                        variants: SelectorVariants::NATIVE)
