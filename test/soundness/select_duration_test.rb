# frozen_string_literal: true

# Issue 9, item 9: select(Float::INFINITY), select(1e30) and other durations
# too large for any timespec block until woken, like select(nil). They must
# not return at once (a scheduler passing them would busy-loop), and wakeup
# from another thread must end them. Negative infinity never blocks.

require_relative "support"

module SoundnessSelectDuration
  include Soundness::Helpers

  WAKE_AFTER = 0.2

  def blocks_until_woken(duration)
    isolated(label: "select(#{duration.inspect})") do
      selector = new_selector(Fiber.current)
      woke = nil
      waker = Thread.new do
        sleep WAKE_AFTER
        deadline = monotonic + 1
        sleep 0.005 until (woke = selector.wakeup) || monotonic > deadline
      end
      outcome, elapsed = timed { selector.select(duration) }
      waker.join
      step "select(#{duration.inspect}) -> #{outcome.inspect} after #{elapsed.round(3)}s"
      assert_kind_of Integer, outcome, "select(#{duration.inspect}) must return a count"
      assert_operator elapsed, :>=, WAKE_AFTER - 0.05, "select(#{duration.inspect}) returned at once instead of waiting to be woken"
      assert_operator elapsed, :<, WAKE_AFTER + 1.0, "wakeup did not end select(#{duration.inspect})"
      assert woke, "wakeup never saw the selector blocked"
      selector.close
      true
    end
  end

  {
    "infinity" => Float::INFINITY,
    "1e30" => 1e30,
    "2_pow_64" => 2**64,
    "huge_rational" => Rational(10**40, 3),
    "u64_seconds_overflow_in_nanoseconds" => 2**63 / 1_000_000_000 + 1,
  }.each do |name, duration|
    define_method("test_select_#{name}_blocks_until_woken") do
      blocks_until_woken(duration)
    end
  end

  {
    "negative_infinity" => -Float::INFINITY,
    "minus_1e30" => -1e30,
    "minus_2_pow_64" => -2**64,
    "negative_zero" => -0.0,
    "one_nanosecond" => 1e-9,
    "denormal" => 5e-324,
  }.each do |name, duration|
    define_method("test_select_#{name}_does_not_block") do
      isolated(label: "select(#{duration.inspect})") do
        selector = new_selector(Fiber.current)
        outcome, elapsed = timed { selector.select(duration) }
        assert_kind_of Integer, outcome, "select(#{duration.inspect})"
        assert_operator elapsed, :<, 0.2, "select(#{duration.inspect}) blocked for #{elapsed.round(2)}s"
        selector.close
        true
      end
    end
  end
end

SelectorVariants.define("SoundnessSelectDuration", SoundnessSelectDuration, variants: SelectorVariants::PLAIN)
