# frozen_string_literal: true

# Shared set-up for every test file: load path, minitest, a hard per-test
# timeout (an event-loop bug shows up as a hang), and an optional GC.stress mode.

$LOAD_PATH.unshift(File.expand_path("../lib", __dir__))

Warning[:experimental] = false
require "io/event"
require "minitest/autorun"
require "timeout"
require "socket"

module IOEventTestHelper
  # Seconds one test may run before it is failed. Override with IO_EVENT_TEST_TIMEOUT.
  TEST_TIMEOUT = Float(ENV.fetch("IO_EVENT_TEST_TIMEOUT", "20"))

  # Every test runs under a watchdog thread. A plain Timeout.timeout cannot
  # interrupt a fiber that is parked (the loop fiber may be the one blocked),
  # so the watchdog raises into the main thread, which ends any select(nil)
  # through the selector's unblock function.
  def run
    return super if ENV["IO_EVENT_TEST_TIMEOUT"] == "0"

    test_thread = Thread.current
    watchdog = Thread.new do
      sleep TEST_TIMEOUT
      test_thread.raise(Timeout::Error, "#{self.class}##{name} did not finish within #{TEST_TIMEOUT}s")
    end
    super
  ensure
    watchdog&.kill
    watchdog&.join
  end

  # Selector classes available in this process, by name.
  def self.selector_classes
    IO::Event::Selector.constants.filter_map do |name|
      klass = IO::Event::Selector.const_get(name)
      klass if klass.is_a?(Class) && klass.method_defined?(:select)
    end
  end
end

Minitest::Test.prepend(IOEventTestHelper)

# Time measurements every test may use.
module IOEventTestClock
  def monotonic
    Process.clock_gettime(Process::CLOCK_MONOTONIC)
  end

  # Seconds the block took.
  def elapsed
    start = monotonic
    yield
    monotonic - start
  end
end

Minitest::Test.include(IOEventTestClock)

if ENV["GC_STRESS"] == "1"
  # Stress only the test bodies; loading with GC.stress on is needlessly slow.
  module IOEventGCStress
    def run
      GC.stress = true
      super
    ensure
      GC.stress = false
    end
  end
  Minitest::Test.prepend(IOEventGCStress)
end
