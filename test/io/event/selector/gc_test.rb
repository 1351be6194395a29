# frozen_string_literal: true

require_relative "../../../test_helper"
require_relative "../../../support/selector_variants"

# Fibers, IOs and buffers held by in-flight operations must be reachable from
# the selector and survive compaction (PROTOCOL.md, "Memory and GC"). These tests
# park fibers that nothing but the selector (and their own stacks) refer to, move
# the heap around, then complete every operation under GC.stress: each fiber
# must resume exactly once, with the right result, and nothing may crash.
module SelectorGCContract
  FIBERS = 24

  include SelectorDriver

  def teardown
    GC.stress = false
    super
  end

  def pipes(count)
    Array.new(count) { pipe }
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
      drive(timeout: 10) { counts.all? { |count| count >= 1 } }
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
      drive(timeout: 10) { counts.each_with_index.all? { |count, index| index.odd? || count >= 1 } }
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
    require_selector_method(:io_read)
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
      drive(timeout: 10) { counts.all? { |count| count >= 1 } }
      3.times { @selector.select(0) }
    ensure
      GC.stress = false
    end

    assert_equal [1] * FIBERS, counts
    assert_equal Array.new(FIBERS) { |index| format("m%04d", index) }, results
  end
end

SelectorVariants.define("SelectorGC", SelectorGCContract, variants: SelectorVariants::PLAIN)
