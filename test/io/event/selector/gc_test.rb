# frozen_string_literal: true

require_relative "../../../test_helper"

# Fibers, IOs and buffers held by in-flight operations must be reachable from
# the selector and survive compaction (PROTOCOL.md, "Memory and GC"). These tests
# park fibers that nothing but the selector (and their own stacks) refer to, move
# the heap around, then complete every operation under GC.stress: each fiber
# must resume exactly once, with the right result, and nothing may crash.
module SelectorGCContract
  FIBERS = 24

  def setup
    unless IO::Event::Selector.const_defined?(selector_class_name, false)
      skip "IO::Event::Selector::#{selector_class_name} is not defined in this process"
    end
    super
    @ios = []
    @selector = new_selector(Fiber.current)
  end

  def teardown
    GC.stress = false
    @selector&.close unless @selector&.closed?
    @ios&.each { |io| io.close unless io.closed? }
    super
  end

  # Builds the selector with the variant's environment set around `new`
  # (IO_EVENT_URING_LEGACY is read by URing.new).
  def new_selector(loop)
    saved = selector_env.to_h { |key, _| [key, ENV[key]] }
    begin
      selector_env.each { |key, value| ENV[key] = value }
      IO::Event::Selector.const_get(selector_class_name, false).new(loop)
    ensure
      saved.each { |key, value| ENV[key] = value }
    end
  end

  def pipes(count)
    Array.new(count) do
      pair = IO.pipe
      @ios.concat(pair)
      pair
    end
  end

  def monotonic
    Process.clock_gettime(Process::CLOCK_MONOTONIC)
  end

  # Move as much of the heap as the VM allows.
  def compact_heap
    if GC.respond_to?(:verify_compaction_references)
      GC.verify_compaction_references(toward: :empty, double_heap: true)
    elsif GC.respond_to?(:compact)
      GC.compact
    else
      GC.start
    end
  rescue NotImplementedError
    GC.start
  end

  # select until the block is true; bounded.
  def drive(timeout = 10)
    deadline = monotonic + timeout
    until yield
      flunk "condition not reached within #{timeout}s" if monotonic > deadline
      @selector.select(0.05)
    end
  end

  # Starts one fiber per input, parked in io_wait. Only the selector and the
  # fiber itself keep the fiber alive: the test keeps no reference to it.
  def park_io_waits(inputs, counts, results)
    inputs.each_with_index do |input, index|
      selector = @selector
      Fiber.new do
        result = selector.io_wait(Fiber.current, input, IO::READABLE)
        # Allocate on the way out, so a stale pointer would show up quickly.
        results[index] = [result, Array.new(8) { |i| "garbage #{i}" }.size]
        counts[index] += 1
      rescue StandardError => error
        results[index] = error
        counts[index] += 1
      end.transfer
    end
    nil
  end

  def test_parked_io_waits_survive_compaction_and_gc_stress
    pairs = pipes(FIBERS)
    counts = Array.new(FIBERS, 0)
    results = Array.new(FIBERS)
    park_io_waits(pairs.map(&:first), counts, results)
    @selector.select(0)

    compact_heap
    GC.start(full_mark: true, immediate_sweep: true)
    compact_heap

    begin
      GC.stress = true
      pairs.each { |_, output| output.write("x") }
      drive { counts.all? { |count| count >= 1 } }
      3.times { @selector.select(0) }
    ensure
      GC.stress = false
    end

    assert_equal [1] * FIBERS, counts, "each fiber resumes exactly once"
    assert_equal [[IO::READABLE, 8]] * FIBERS, results
  end

  def test_gc_stress_while_parking_cancelling_and_completing
    pairs = pipes(FIBERS)
    counts = Array.new(FIBERS, 0)
    results = Array.new(FIBERS)
    fibers = []

    begin
      GC.stress = true
      pairs.each_with_index do |(input, _), index|
        selector = @selector
        fiber = Fiber.new do
          results[index] = selector.io_wait(Fiber.current, input, IO::READABLE)
          counts[index] += 1
        rescue RuntimeError => error
          results[index] = error.message
          counts[index] += 1
          # Stay parked: a stale resume would bump the count again.
          selector.loop.transfer
          counts[index] += 1
        end
        fiber.transfer
        fibers << fiber
      end
      @selector.select(0)

      # Cancel every other wait by raising into it.
      fibers.each_with_index { |fiber, index| fiber.raise(RuntimeError, "cancelled") if index.odd? }
    ensure
      GC.stress = false
    end

    compact_heap

    begin
      GC.stress = true
      pairs.each { |_, output| output.write("x") }
      drive { counts.each_with_index.all? { |count, index| index.odd? || count >= 1 } }
      3.times { @selector.select(0) }
    ensure
      GC.stress = false
    end

    assert_equal [1] * FIBERS, counts, "each fiber resumed or cancelled exactly once"
    results.each_with_index do |result, index|
      expected = index.odd? ? "cancelled" : IO::READABLE
      assert_equal expected, result, "fiber #{index}"
    end
  end

  def test_parked_reads_into_buffers_survive_compaction_and_gc_stress
    skip "#{selector_class_name} has no io_read" unless @selector.respond_to?(:io_read)
    skip "IO::Buffer is not available" unless defined?(IO::Buffer)

    pairs = pipes(FIBERS)
    counts = Array.new(FIBERS, 0)
    results = Array.new(FIBERS)
    pairs.each_with_index do |(input, _), index|
      selector = @selector
      Fiber.new do
        buffer = IO::Buffer.new(64)
        length = selector.io_read(Fiber.current, input, buffer, 5)
        results[index] = length.is_a?(Integer) && length >= 0 ? buffer.get_string(0, length) : length
        counts[index] += 1
      end.transfer
    end
    @selector.select(0)

    compact_heap

    begin
      GC.stress = true
      pairs.each_with_index { |(_, output), index| output.write(format("m%04d", index)) }
      drive { counts.all? { |count| count >= 1 } }
      3.times { @selector.select(0) }
    ensure
      GC.stress = false
    end

    assert_equal [1] * FIBERS, counts
    assert_equal Array.new(FIBERS) { |index| format("m%04d", index) }, results
  end
end

{
  "URing" => ["URing", {}],
  "URingLegacy" => ["URing", {"IO_EVENT_URING_LEGACY" => "1"}],
  "EPoll" => ["EPoll", {}],
  "Select" => ["Select", {}],
}.each do |label, (class_name, env)|
  klass = Class.new(Minitest::Test) do
    include SelectorGCContract

    define_method(:selector_class_name) { class_name }
    define_method(:selector_env) { env }
  end
  Object.const_set("SelectorGC#{label}Test", klass)
end
