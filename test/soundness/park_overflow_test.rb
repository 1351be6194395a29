# frozen_string_literal: true

# Parking when the ring is busy (URing's push_and_submit and its fallbacks;
# EPoll for comparison): a parked op whose submission itself completes (the
# descriptor is ready) posts its CQE inside park's enter, with no reap until
# the next select. Thousands of them overflow the CQ (256)
# *while parking*, so later parks' first submit meets a CQ overflow. Every
# fiber must resume exactly once with its own result; raising into half of
# them before select must cancel cleanly; the selector must close cleanly.
# Each case runs in a forked child under a timeout (a crash is a failure).

require_relative "support"

module SoundnessParkOverflow
  include Soundness::Helpers

  def ready_pairs(count)
    soft, hard = Process.getrlimit(:NOFILE)
    needed = 2 * count + 256
    Process.setrlimit(:NOFILE, [needed, hard].min, hard) if soft < needed
    Array.new(count) do
      a, b = UNIXSocket.pair
      b.write("x")
      [a, b]
    end
  end

  def run_case(kind, count:, interrupt_every: nil)
    isolated(timeout: 30) do
      loop_fiber = Fiber.current
      selector = SelectorVariants.build(selector_variant, loop_fiber)
      pairs = ready_pairs(count)
      results = Array.new(count)
      resumed = Array.new(count, 0)
      errors = Array.new(count)
      buffers = Array.new(count) { IO::Buffer.new(8) }
      fibers = pairs.each_with_index.map do |(local, _), i|
        f = Fiber.new do
          begin
            results[i] =
              case kind
              when :wait then selector.io_wait(Fiber.current, local, IO::READABLE)
              when :read then selector.io_read(Fiber.current, local, buffers[i], 1, 0)
              end
          rescue StandardError => e
            errors[i] = e
          end
          resumed[i] += 1
          loop_fiber.transfer
        end
        f.transfer
        f
      end
      step "parked #{count}"
      if interrupt_every
        fibers.each_with_index do |f, i|
          next unless (i % interrupt_every).zero? && resumed[i].zero?
          f.raise(RuntimeError, "interrupted #{i}")
        end
        step "interrupted"
      end
      deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 20
      until resumed.sum >= count
        raise "not all resumed: #{resumed.sum}/#{count}" if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline
        selector.select(0.05)
      end
      5.times { selector.select(0.01) }
      step "all resumed"
      assert_equal [1], resumed.uniq, "each fiber resumes exactly once"
      expected = kind == :wait ? IO::READABLE : 1
      bad = results.each_with_index.reject { |r, i| r == expected || errors[i] }.first(5)
      assert_empty bad, "unexpected results (first 5 of #{results.count { |r| r != expected }})"
      if interrupt_every
        assert errors.compact.all? { |e| e.message.start_with?("interrupted") }, errors.compact.first.inspect
      else
        assert_equal [], errors.compact.map(&:inspect).first(3)
      end
      if kind == :read
        buffers.each_with_index { |b, i| assert_equal "x", b.get_string(0, 1), "buffer #{i}" unless errors[i] }
      end
      selector.close
      pairs.flatten.each(&:close)
      [resumed.sum, errors.compact.size]
    end
  end

  def test_waits_completing_at_submission_overflow_the_cq_while_parking
    run_case(:wait, count: 2000)
  end

  def test_reads_completing_at_submission_overflow_the_cq_while_parking
    run_case(:read, count: 2000)
  end

  def test_interrupted_waits_while_the_cq_overflowed
    run_case(:wait, count: 1500, interrupt_every: 2)
  end

  def test_interrupted_reads_while_the_cq_overflowed
    run_case(:read, count: 1500, interrupt_every: 2)
  end

  # A closed selector: the op is never pushed, its slot must be freed
  # (discard), not leaked: the IOs and buffers handed to the failed calls must
  # be collectable afterwards (a leaked slot would keep marking them).
  def test_parking_on_a_closed_selector_leaks_no_slot
    isolated(timeout: 20) do
      loop_fiber = Fiber.current
      selector = SelectorVariants.build(selector_variant, loop_fiber)
      selector.close
      weak = ObjectSpace::WeakMap.new
      errors = Hash.new(0)
      make = lambda do |i|
        r, w = IO.pipe
        buffer = IO::Buffer.new(8)
        weak[r] = i
        weak[buffer] = i
        f = Fiber.new do
          selector.io_wait(Fiber.current, r, IO::READABLE)
        rescue IOError => e
          errors[e.class] += 1
        end
        f.resume
        f = Fiber.new do
          selector.io_read(Fiber.current, r, buffer, 1, 0)
        rescue IOError => e
          errors[e.class] += 1
        end
        f.resume
        r.close
        w.close
        nil
      end
      200.times { |i| make.(i) }
      4.times { GC.start(full_mark: true, immediate_sweep: true) }
      alive = weak.keys.size
      assert_equal({IOError => 400}, errors)
      assert_operator alive, :<, 20, "#{alive} of 400 objects handed to failed parks are still reachable"
      alive
    end
  end
end

SelectorVariants.define("SoundnessParkOverflow", SoundnessParkOverflow,
                        variants: [SelectorVariants.fetch("URing"), SelectorVariants.fetch("URingLegacy"), SelectorVariants.fetch("EPoll")])
