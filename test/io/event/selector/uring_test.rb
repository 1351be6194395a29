# frozen_string_literal: true

require_relative "../../../test_helper"
require_relative "../../../support/selector_variants"

# The URing selector's two ring set-ups really differ: otherwise the legacy
# variant of every table-driven test would silently test the modern path
# twice. (The contract itself runs in contract_test.rb, against every variant.)
class URingSetupTest < Minitest::Test
  include SelectorVariants

  def selector_variant
    SelectorVariants.fetch("URing")
  end

  def test_modern_setup_uses_the_newest_flags_this_kernel_takes
    selector = new_selector
    features = selector.features
    assert_includes %w[Deferred Cooperative SubmitAll Plain], features[:setup]
    # This project's CI kernels are 6.1 or later.
    assert_equal "Deferred", features[:setup]
    assert_equal true, features[:ext_arg]
  ensure
    selector&.close
  end

  def test_legacy_setup_uses_no_flags_and_no_ext_arg
    selector_class
    selector = SelectorVariants.build(SelectorVariants.fetch("URingLegacy"), Fiber.current)
    assert_equal({setup: "Plain", ext_arg: false}, selector.features)
  ensure
    selector&.close
  end

  # Issue 9: the kernel writes an IORING_OP_WAITID's siginfo_t whenever the
  # op ends, even when it ends in the kernel's exit work or fallback worker
  # (a wait still in flight when its ring goes away: a forked child exiting,
  # a selector given up on another thread), and such a worker writes through
  # whatever address space it borrowed, a parent's included (DESIGN.md,
  # "process_wait"). So a wait for a child, on either ring set-up, polls a
  # pidfd: an op that names no memory of ours.
  def test_a_parked_process_wait_polls_a_pidfd_and_names_no_memory
    selector_class
    %w[URing URingLegacy].each do |name|
      selector = SelectorVariants.build(SelectorVariants.fetch(name), Fiber.current)
      input, release = IO.pipe
      pid = Process.spawn("sh", "-c", "read line", in: input)
      input.close
      before = pidfds
      status = nil
      waiter = Fiber.new { status = selector.process_wait(Fiber.current, pid, 0) }
      waiter.transfer
      assert_equal before + 1, pidfds, "#{name}: a parked process_wait polls one pidfd"
      release.close
      deadline = monotonic + 10
      selector.select(0.05) while waiter.alive? && monotonic < deadline
      refute waiter.alive?, "#{name}: process_wait did not return after the child exited"
      assert_equal pid, status.pid
      assert_equal before, pidfds, "#{name}: the pidfd is closed once the wait returns"
    ensure
      release&.close unless release&.closed?
      selector&.close
    end
  end

  def pidfds
    Dir.children("/proc/self/fd").count do |fd|
      File.readlink("/proc/self/fd/#{fd}") == "anon_inode:[pidfd]"
    rescue SystemCallError
      false
    end
  end

  def test_another_thread_cannot_close_the_ring_under_a_blocked_select
    selector = new_selector
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
    selector = new_selector
    selector.close
    assert_raises(IOError) { selector.features }
  end

  def test_select_zero_with_nothing_pending_enters_no_system_call
    selector_class
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
