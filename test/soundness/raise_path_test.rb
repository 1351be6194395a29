# frozen_string_literal: true

# How an error leaves a method entry (`raw_method!` in ruby/receiver.rs). An
# error made of a class and a message becomes its exception on the way out;
# if that class's constructor throws (or breaks), the throw must reach its
# catch like any other, never abort the process (a jump in a frame that
# cannot unwind). Each case runs in a fresh child process, so an abort is a
# failure, not a lost run.

require_relative "support"

module SoundnessRaisePath
  include Soundness::Helpers

  def child(code, exit_status_matters: true)
    reported, status, stderr = isolated_script(<<~RUBY, timeout: 10, label: "raise path")
      require "io/event"
      selector = IO::Event::Selector.const_get(#{selector_variant.class_name.inspect}).new(Fiber.current)
      #{code}
    RUBY
    refute status.signaled?, "child killed: #{status.inspect}: #{stderr.to_s.lines.first(4).join}"
    assert !exit_status_matters || status.success?,
           "child failed (#{status.inspect}): #{stderr.to_s.lines.last(8).join} reported=#{reported.inspect}"
    reported
  end

  # `resume` without a fiber raises ArgumentError, whose constructor throws.
  def test_a_throwing_exception_constructor_reaches_its_catch
    result = child(<<~RUBY)
      ArgumentError.class_eval { def initialize(*) = throw(:escape, :thrown) }
      report(catch(:escape) { selector.resume; :returned })
    RUBY
    assert_equal :thrown, result
  end

  # The same through TypeError (`push` of something that is not a fiber).
  def test_a_throwing_type_error_constructor_reaches_its_catch
    result = child(<<~RUBY)
      TypeError.class_eval { def initialize(*) = throw(:escape, :thrown) }
      report(catch(:escape) { selector.push(Object.new); :returned })
    RUBY
    assert_equal :thrown, result
  end

  # The exception itself is still what the caller gets, message included.
  def test_the_error_raised_is_the_class_and_message_made
    result = child(<<~RUBY)
      begin
        selector.push(Object.new)
        report(:returned)
      rescue TypeError => error
        report([error.class.name, error.message])
      end
    RUBY
    assert_equal "TypeError", result[0]
    assert_match(/Fiber/, result[1])
  end

  # A TracePoint(:raise) hook that throws runs inside Ruby's raise, when
  # the entry has nothing left alive. (Ruby 3.1 itself exits 1 after a
  # raise hook has thrown, with or without us: only the throw is checked.)
  def test_a_throwing_raise_hook_reaches_its_catch
    result = child(<<~RUBY, exit_status_matters: false)
      trace = TracePoint.new(:raise) { throw(:escape, :thrown) }
      r = catch(:escape) { trace.enable { selector.push(Object.new) }; :returned }
      report(r)
    RUBY
    assert_equal :thrown, result
  end
end

SelectorVariants.define("SoundnessRaisePath", SoundnessRaisePath,
                        variants: [SelectorVariants.fetch("URing"), SelectorVariants.fetch("EPoll")])
