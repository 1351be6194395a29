# frozen_string_literal: true

# Two threads making their first selector of a class at once must not
# deadlock. A lookup the extension makes lazily on first use (a class by
# name, a constant) runs Ruby code, which may switch threads in the middle of
# a one-time initialisation that the other thread then waits for while
# holding the GVL. Everything is resolved at load instead. The `const_get`
# hook below stands in for a timer-driven thread switch at that point.

require_relative "support"

module SoundnessFirstUse
  include Soundness::Helpers

  def test_two_threads_making_their_first_selector_at_once_do_not_deadlock
    klass = selector_class
    script = <<~RUBY
      require "io/event"
      class << Object
        def const_get(*arguments)
          Thread.pass
          sleep 0.01
          super
        end
      end
      klass = IO::Event::Selector.const_get(#{klass.name.split("::").last.dump})
      threads = 2.times.map do
        Thread.new do
          selector = klass.new(Fiber.current)
          reader, writer = IO.pipe
          waiter = Fiber.new { selector.process_wait(Fiber.current, Process.spawn("true"), 0) }
          waiter.transfer
          selector.select(1) while waiter.alive?
          selector.close
          reader.close
          writer.close
        end
      end
      threads.each(&:join)
      puts "ok"
    RUBY
    output, status = run_script_with_timeout(script, 10)
    assert status&.success?, "two threads making their first #{klass} at once hung or failed: #{status.inspect} #{output}"
    assert_equal "ok", output.strip.lines.last&.strip
  end

  # Runs `script` in a fresh Ruby; [output, status], status nil if it was
  # killed after `seconds`.
  def run_script_with_timeout(script, seconds)
    lib = File.expand_path("../../lib", __dir__)
    reader, writer = IO.pipe
    pid = Process.spawn(RbConfig.ruby, "-I", lib, "-e", script, out: writer, err: writer)
    writer.close
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + seconds
    status = nil
    until (status = Process.wait2(pid, Process::WNOHANG)&.last)
      if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline
        Process.kill(:KILL, pid)
        Process.wait(pid)
        return [reader.read, nil]
      end
      sleep 0.05
    end
    [reader.read, status]
  ensure
    reader&.close
  end
end

SelectorVariants.define("SoundnessFirstUse", SoundnessFirstUse, variants: SelectorVariants::PLAIN)
