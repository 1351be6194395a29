# frozen_string_literal: true

require_relative "../../../test_helper"
require_relative "../../../support/tracked_selectors"
require "tempfile"
require "stringio"

begin
  require "io/event/debug/selector"
rescue LoadError
  # The Debug variants of the selector table then skip.
end

# The checks IO::Event::Debug::Selector makes on top of the contract, and its log.
class DebugSelectorChecksTest < Minitest::Test
  Selector = IO::Event::Selector

  include TrackedSelectors

  def test_debug_log_file_records_calls
    log = Tempfile.new("io-event-debug")
    env = {
      "IO_EVENT_SELECTOR" => "Select",
      "IO_EVENT_DEBUG_SELECTOR" => "1",
      "IO_EVENT_DEBUG_SELECTOR_LOG" => log.path,
    }
    selector = track(Selector.new(Fiber.current, env))
    input, output = IO.pipe
    fiber = Fiber.new { selector.io_wait(Fiber.current, input, IO::READABLE) }
    fiber.transfer
    output.write(".")
    selector.select(1)
    refute fiber.alive?
    selector.close

    log_file = selector.instance_variable_get(:@log)
    assert_nil log_file, "close should have closed and dropped the log file"

    lines = File.readlines(log.path)
    assert(lines.any? { |line| line.include?("io_wait(") && line.include?(", 1)") }, lines.join)
    assert(lines.any? { |line| line.include?("io_wait -> 1") }, lines.join)
    assert(lines.any? { |line| line.include?("select(1)") }, lines.join)
    assert(lines.all? { |line| line.start_with?("T+") }, lines.join)
  ensure
    input&.close
    output&.close
    log&.close!
  end

  def debug_selector
    track(IO::Event::Debug::Selector.new(Selector::Select.new(Fiber.current)))
  end

  # Runs +block+ in a new fiber and returns the exception it raised.
  def error_in_fiber(&block)
    fiber = Fiber.new do
      block.call
      nil
    rescue Exception => error # rubocop:disable Lint/RescueException
      error
    end
    result = fiber.transfer
    flunk "the call parked instead of raising" if fiber.alive?
    result
  end

  def test_debug_delegates_a_real_wait
    selector = debug_selector
    input, output = IO.pipe
    result = nil
    fiber = Fiber.new { result = selector.io_wait(Fiber.current, input, IO::READABLE) }
    fiber.transfer
    output.write(".")
    selector.select(1)
    assert_equal IO::READABLE, result
  ensure
    input&.close
    output&.close
  end

  def test_debug_rejects_closed_ios
    selector = debug_selector
    input, output = IO.pipe
    input.close
    buffer = IO::Buffer.new(8)
    assert_kind_of IOError, error_in_fiber { selector.io_wait(Fiber.current, input, IO::READABLE) }
    assert_kind_of IOError, error_in_fiber { selector.io_read(Fiber.current, input, buffer, 1) }
    output.close
    assert_kind_of IOError, error_in_fiber { selector.io_write(Fiber.current, output, buffer, 1) }
  end

  def test_debug_rejects_bad_argument_types
    selector = debug_selector
    input, output = IO.pipe
    assert_kind_of TypeError, error_in_fiber { selector.io_wait(Fiber.current, input, "1") }
    assert_kind_of TypeError, error_in_fiber { selector.io_wait(Fiber.current, "not an io", IO::READABLE) }
    assert_kind_of TypeError, error_in_fiber { selector.io_wait(:fiber, input, IO::READABLE) }
    assert_kind_of TypeError, error_in_fiber { selector.io_read(Fiber.current, input, "buffer", 1) }
    assert_kind_of TypeError, error_in_fiber { selector.io_read(Fiber.current, input, IO::Buffer.new(1), 1.5) }
    assert_kind_of ArgumentError, error_in_fiber { selector.io_read(Fiber.current, input, IO::Buffer.new(1), -1) }
    assert_kind_of ArgumentError, error_in_fiber { selector.io_wait(Fiber.current, input, 0) }
    assert_raises(TypeError) { selector.push(42) }
    assert_raises(TypeError) { selector.resume(Object.new) }
    assert_raises(TypeError) { selector.select("soon") }
    assert_raises(TypeError) { selector.io_close("3") }
    refute selector.ready?
  ensure
    input&.close
    output&.close
  end

  def test_debug_rejects_parking_the_loop_or_another_fiber
    selector = debug_selector
    input, output = IO.pipe
    error = assert_raises(RuntimeError) { selector.io_wait(Fiber.current, input, IO::READABLE) }
    assert_match(/event loop fiber/, error.message)
    other = Fiber.new {}
    assert_kind_of RuntimeError, error_in_fiber { selector.io_wait(other, input, IO::READABLE) }
    assert_raises(FiberError) { selector.yield }
    assert_raises(FiberError) { selector.resume(Fiber.current) }
  ensure
    input&.close
    output&.close
  end

  def test_debug_select_must_run_on_the_loop_fiber_and_thread
    selector = debug_selector
    error = error_in_fiber { selector.select(0) }
    assert_kind_of RuntimeError, error
    assert_match(/run on event loop/, error.message)
    thread = Thread.new do
      selector.select(0)
    rescue RuntimeError => error
      error
    end
    assert_kind_of RuntimeError, thread.value
  end

  def test_debug_allows_push_and_wakeup_from_another_thread
    selector = debug_selector
    ran = false
    fiber = Fiber.new { ran = true }
    Thread.new { selector.push(fiber) }.join
    assert_equal false, Thread.new { selector.wakeup }.value
    selector.select(0)
    assert ran
  end

  def test_debug_close_twice_raises_and_select_after_close_raises
    selector = debug_selector
    selector.close
    assert_predicate selector, :closed?
    error = assert_raises(RuntimeError) { selector.close }
    assert_match(/already closed/, error.message)
    assert_raises(IOError) { selector.select(0) }
  end

  def test_debug_respond_to_mirrors_the_wrapped_selector
    selector = debug_selector
    %i[io_read io_write io_pread io_pwrite io_close process_wait].each do |name|
      assert_equal selector.selector.respond_to?(name), selector.respond_to?(name), name.to_s
    end
    refute selector.respond_to?(:no_such_method)
    assert_raises(NoMethodError) { selector.no_such_method }
  end

  def test_debug_must_be_created_on_the_loop_fiber
    inner = track(Selector::Select.new(Fiber.current))
    error = error_in_fiber { IO::Event::Debug::Selector.new(inner) }
    assert_kind_of RuntimeError, error
    assert_match(/initialized on event loop fiber/, error.message)
  end

  def test_debug_log_path_from_the_environment
    Tempfile.create("io-event-debug") do |file|
      selector = IO::Event::Debug::Selector.wrap(Selector::Select.new(Fiber.current), {"IO_EVENT_DEBUG_SELECTOR_LOG" => file.path})
      track(selector)
      selector.select(0)
      selector.push(Fiber.new {})
      selector.close
      lines = File.readlines(file.path)
      assert(lines.any? { |line| line =~ /\AT\+[0-9.]+; select\(0\)$/ }, lines.join)
      assert(lines.any? { |line| line.include?("push(#<Fiber") }, lines.join)
      assert(lines.any? { |line| line.include?("close") }, lines.join)
    end
  end

  def test_debug_log_is_public_and_takes_a_message_or_a_block
    output = StringIO.new
    selector = track(IO::Event::Debug::Selector.new(Selector::Select.new(Fiber.current), log: output))
    assert selector.public_methods.include?(:log)
    selector.log("by message")
    selector.log { "by block" }
    lines = output.string.lines
    assert_match(/\AT\+[0-9.]+; by message$/, lines[0])
    assert_match(/\AT\+[0-9.]+; by block$/, lines[1])
    assert_kind_of Float, selector.now
  end

  def test_debug_log_without_a_log_does_not_call_the_block
    selector = debug_selector
    assert_nil(selector.log { flunk "the block ran without a log" })
  end

  def test_debug_logs_exceptions_and_reraises_them
    output = StringIO.new
    selector = track(IO::Event::Debug::Selector.new(Selector::Select.new(Fiber.current), log: output))
    fiber = Fiber.new do
      selector.transfer
    rescue ArgumentError
      :rescued
    end
    fiber.transfer
    result = nil
    Fiber.new { result = selector.raise(fiber, ArgumentError, "boom") }.transfer
    assert_match(/raise\(#<Fiber.*ArgumentError.*"boom"/, output.string)
    refute fiber.alive?
    assert_nil result
  end

  def test_debug_transfer_at_the_end_of_the_buffer_reaches_the_selector
    selector = debug_selector
    input, output = IO.pipe
    input.close
    output.close
    buffer = IO::Buffer.new(4)
    results = []
    Fiber.new do
      results << selector.io_read(Fiber.current, input, buffer, 1, 4)
      results << selector.io_write(Fiber.current, output, buffer, 1, 4)
    end.transfer
    assert_equal [0, 0], results
  end
end
