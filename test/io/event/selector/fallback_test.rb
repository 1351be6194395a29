# frozen_string_literal: true

require_relative "../../../test_helper"
require "rbconfig"
require "tempfile"

# The forced fallback path (PROTOCOL.md, "Fallback"): with IO_EVENT_URING_DISABLE=1
# in the environment at load time, URing is not defined, EPoll is the default,
# at most one line goes to stderr, and the whole selector contract still passes
# on EPoll. Each case runs in a child Ruby, because the variable is read once at
# load.
class SelectorFallbackTest < Minitest::Test
  ROOT = File.expand_path("../../../..", __dir__)
  LIB = File.join(ROOT, "lib")
  TEST = File.join(ROOT, "test")

  # Variables that would change which selector a child picks or how it runs.
  CLEAN_ENV = {
    "IO_EVENT_SELECTOR" => nil,
    "IO_EVENT_DEBUG_SELECTOR" => nil,
    "IO_EVENT_URING_LEGACY" => nil,
    "GC_STRESS" => nil,
    "RUBYOPT" => nil,
  }.freeze

  # Runs ruby with `arguments` in a child; returns [status, stdout, stderr].
  # Killed (and the test failed) after `timeout` seconds.
  def run_ruby(env, *arguments, timeout:)
    # The child is the subject here; GC_STRESS=1 in this process would only
    # slow down the polling below.
    stress = GC.stress
    GC.stress = false
    out = Tempfile.new("fallback-out")
    err = Tempfile.new("fallback-err")
    pid = Process.spawn(CLEAN_ENV.merge(env), RbConfig.ruby, "-I", LIB, *arguments,
      out: out.path, err: err.path, in: File::NULL, chdir: ROOT)
    deadline = monotonic + timeout
    status = nil
    until (status = Process.waitpid2(pid, Process::WNOHANG)&.last)
      if monotonic > deadline
        Process.kill(:KILL, pid)
        Process.waitpid(pid)
        flunk "child ruby #{arguments.inspect} did not finish within #{timeout}s:\n#{File.read(err.path)}"
      end
      sleep 0.01
    end
    [status, File.read(out.path), File.read(err.path)]
  ensure
    out&.close!
    err&.close!
    GC.stress = stress
  end

  PROBE = <<~RUBY
    require "io/event"
    puts IO::Event::Selector.default.name
    puts defined?(IO::Event::Selector::URing).inspect
    puts defined?(IO::Event::Selector::EPoll).inspect
    selector = IO::Event::Selector.new(Fiber.current)
    puts selector.class.name
    input, output = IO.pipe
    result = nil
    Fiber.new { result = selector.io_wait(Fiber.current, input, IO::READABLE) }.transfer
    output.write("x")
    selector.select(1) until result
    puts result
    selector.close
  RUBY

  def test_disable_variable_makes_epoll_the_default
    status, out, err = run_ruby({"IO_EVENT_URING_DISABLE" => "1"}, "-e", PROBE, timeout: 15)
    assert status.success?, "child failed: #{err}"
    default, uring, epoll, instance, result = out.lines.map(&:chomp)
    assert_equal "IO::Event::Selector::EPoll", default
    assert_equal "nil", uring, "URing must not be defined when IO_EVENT_URING_DISABLE=1"
    assert_equal '"constant"', epoll
    assert_equal "IO::Event::Selector::EPoll", instance
    assert_equal IO::READABLE.to_s, result
    assert_operator err.lines.size, :<=, 1, "more than one line on stderr:\n#{err}"
  end

  def test_without_the_variable_uring_is_used_when_available
    skip "URing is not defined in this process either (no io_uring here)" unless defined?(IO::Event::Selector::URing)

    status, out, err = run_ruby({"IO_EVENT_URING_DISABLE" => nil}, "-e", PROBE, timeout: 15)
    assert status.success?, "child failed: #{err}"
    default, uring, = out.lines.map(&:chomp)
    assert_equal "IO::Event::Selector::URing", default
    assert_equal '"constant"', uring
    assert_empty err
  end

  def test_selector_contract_passes_on_epoll_with_uring_disabled
    env = {"IO_EVENT_URING_DISABLE" => "1", "IO_EVENT_TEST_TIMEOUT" => "10"}
    test_file = File.join(TEST, "io/event/selector/contract_test.rb")
    status, out, err = run_ruby(env, "-I", TEST, test_file, "-n", "/\\AEPollSelectorTest#/", timeout: 18)

    summary = out[/(\d+) runs, (\d+) assertions, (\d+) failures, (\d+) errors, (\d+) skips/]
    refute_nil summary, "no minitest summary from the child:\n#{out}\n#{err}"
    runs, _assertions, failures, errors, skips = Regexp.last_match.captures.map(&:to_i)
    assert status.success?, "EPoll contract failed with URing disabled:\n#{out}\n#{err}"
    assert_equal 0, failures
    assert_equal 0, errors
    assert_operator runs, :>, 0
    assert_operator skips, :<, runs, "every contract test was skipped: EPoll is missing\n#{out}"
  end

  def test_uring_contract_is_skipped_visibly_when_disabled
    env = {"IO_EVENT_URING_DISABLE" => "1", "IO_EVENT_TEST_TIMEOUT" => "10"}
    contract = File.join(TEST, "io/event/selector/contract_test.rb")
    test_file = File.join(TEST, "io/event/selector/uring_test.rb")
    only_uring = "/\\AURing(Legacy)?(Selector|Setup)Test#/"
    status, out, err = run_ruby(env, "-I", TEST, "-r", contract, test_file, "-v", "-n", only_uring, timeout: 18)

    assert status.success?, "child failed:\n#{out}\n#{err}"
    assert_match(/URing is not defined in this process \(IO_EVENT_URING_DISABLE=1 is set\)/, out)
    assert_match(/0 failures, 0 errors/, out)
  end
end
