# frozen_string_literal: true

require_relative "../../../test_helper"
require_relative "../../../support/selector_contract"

module URingAvailability
  def setup
    unless defined?(IO::Event::Selector::URing)
      reason =
        if ENV["IO_EVENT_URING_DISABLE"] == "1"
          "IO_EVENT_URING_DISABLE=1 is set"
        else
          "io_uring unavailable here, or the native extension is not built"
        end
      skip "IO::Event::Selector::URing is not defined in this process (#{reason})"
    end
    super
  end

  def selector_class
    IO::Event::Selector::URing
  end
end

# The selector contract against the io_uring selector, with the ring set up as
# on a current kernel (SINGLE_ISSUER, DEFER_TASKRUN, EXT_ARG waits).
class URingSelectorTest < Minitest::Test
  include SelectorContract
  include URingAvailability
end

# The same contract with IO_EVENT_URING_LEGACY=1 around URing.new: the ring is
# set up as on an old kernel (no SINGLE_ISSUER/DEFER_TASKRUN/TASKRUN_FLAG/
# SUBMIT_ALL, a timeout SQE instead of EXT_ARG).
class URingLegacySelectorTest < Minitest::Test
  include SelectorContract
  include URingAvailability

  def new_selector(loop)
    saved = ENV["IO_EVENT_URING_LEGACY"]
    ENV["IO_EVENT_URING_LEGACY"] = "1"
    begin
      selector_class.new(loop)
    ensure
      if saved.nil?
        ENV.delete("IO_EVENT_URING_LEGACY")
      else
        ENV["IO_EVENT_URING_LEGACY"] = saved
      end
    end
  end
end

# The two ring set-ups really differ: otherwise the legacy suite above would
# silently test the modern path twice.
class URingSetupTest < Minitest::Test
  include URingAvailability

  def test_modern_setup_uses_the_newest_flags_this_kernel_takes
    selector = selector_class.new(Fiber.current)
    features = selector.features
    assert_includes %w[Deferred Cooperative SubmitAll Plain], features[:setup]
    # This project's CI kernels are 6.1 or later.
    assert_equal "Deferred", features[:setup]
    assert_equal true, features[:ext_arg]
  ensure
    selector&.close
  end

  def test_legacy_setup_uses_no_flags_no_ext_arg_and_no_waitid
    ENV["IO_EVENT_URING_LEGACY"] = "1"
    selector = selector_class.new(Fiber.current)
    assert_equal({setup: "Plain", ext_arg: false, waitid: false}, selector.features)
  ensure
    ENV.delete("IO_EVENT_URING_LEGACY")
    selector&.close
  end

  def test_another_thread_cannot_close_the_ring_under_a_blocked_select
    selector = selector_class.new(Fiber.current)
    outcome = Queue.new
    other = Thread.new do
      sleep 0.1 # let the main thread block in select(nil)
      closed = selector.closed?
      begin
        selector.close
        outcome << [closed, :closed]
      rescue RuntimeError => error
        outcome << [closed, error.message]
      ensure
        selector.wakeup
      end
    end
    selector.select(nil)
    other.join(5)
    closed, result = outcome.pop
    assert_equal false, closed, "a selector blocked in select is open"
    assert_match(/in use/, result)
    refute selector.closed?
    assert_equal 0, selector.select(0), "the selector still works"
  ensure
    other&.kill
    selector&.close
    assert selector.closed? if selector
  end

  def test_features_of_a_closed_selector_raise_io_error
    selector = selector_class.new(Fiber.current)
    selector.close
    assert_raises(IOError) { selector.features }
  end

  def test_select_zero_with_nothing_pending_enters_no_system_call
    skip "strace is not installed" unless system("which strace > /dev/null 2>&1")
    script = <<~RUBY
      require "io/event"
      selector = IO::Event::Selector::URing.new(Fiber.current)
      selector.select(0)
      $stdout.puts "begin"; $stdout.flush
      10_000.times { selector.select(0) }
      $stdout.puts "end"; $stdout.flush
    RUBY
    lib = File.expand_path("../../../../lib", __dir__)
    output = IO.popen(["strace", "-f", "-e", "trace=io_uring_enter,write", "-o", "/dev/stdout", RbConfig.ruby, "-I", lib, "-e", script], err: File::NULL, &:read)
    between = output[/write\(1, "begin.*?write\(1, "end/m]
    refute_nil between, "strace output did not contain the markers:\n#{output[-2000..]}"
    assert_equal 0, between.scan("io_uring_enter").size, "select(0) entered the kernel"
  end
end
