# frozen_string_literal: true

# The GVL-free blocking wait adds nothing: no native thread, no Ruby object
# per wait, and a wake-up still ends it. Ruby starts an unblock helper thread
# for a custom unblock function when the process has a single Ruby thread,
# unless the function is declared async-signal-safe; so the counts are taken
# in a fresh single-threaded Ruby process (the test process has a watchdog
# thread). Counts, not timings: these hold on any machine.

require "test_helper"
require "support/selector_variants"
require "rbconfig"
require "json"

module BlockingWaitContract
  include SelectorVariants

  LIB = File.expand_path("../../../../lib", __dir__)

  # Runs 100 blocking selects in a fresh process; returns its counts.
  def counts_in_a_fresh_process
    script = <<~RUBY
      require "io/event"
      require "json"
      Warning[:experimental] = false
      klass = IO::Event::Selector.const_get(#{selector_variant.class_name.dump})
      #{selector_variant.env.map { |k, v| "ENV[#{k.dump}] = #{v.dump}" }.join("; ")}
      selector = klass.new(Fiber.current)
      threads = Dir.children("/proc/self/task").size
      3.times { selector.select(0.0001) }
      GC.disable
      before = GC.stat(:total_allocated_objects)
      100.times { selector.select(0.0001) }
      allocated = GC.stat(:total_allocated_objects) - before
      puts JSON.generate(threads_before: threads, threads_after: Dir.children("/proc/self/task").size, allocated: allocated)
    RUBY
    output = IO.popen([RbConfig.ruby, "-I", LIB, "-e", script], err: File::NULL, &:read)
    assert $?.success?, "the child failed: #{$?.inspect}"
    JSON.parse(output.lines.last, symbolize_names: true)
  end

  def test_blocking_selects_start_no_native_thread_and_allocate_nothing
    selector_class
    skip "pure Ruby selector" if selector_variant.class_name == "Select"
    counts = counts_in_a_fresh_process
    assert_equal counts[:threads_before], counts[:threads_after], "a blocking select left a native thread behind"
    assert_operator counts[:allocated], :<, 10, "#{counts[:allocated]} objects allocated by 100 blocking selects"
  end

  def test_wakeup_from_another_thread_still_ends_the_wait
    selector = new_selector(Fiber.current)
    waker = Thread.new do
      sleep 0.05 until selector.wakeup
    end
    started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    assert_kind_of Integer, selector.select(5)
    assert_operator Process.clock_gettime(Process::CLOCK_MONOTONIC) - started, :<, 4
    waker.join
  ensure
    selector&.close
  end
end

SelectorVariants.define("BlockingWait", BlockingWaitContract, variants: SelectorVariants::PLAIN)
