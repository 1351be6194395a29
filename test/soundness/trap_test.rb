# frozen_string_literal: true

# Issue 9, item 2: a trap handler that runs while a selector is blocked. The
# signal arrives (from another thread, or from another process so that this
# one stays single-threaded) during select(3) / select(nil), or while a fiber
# is parked in io_wait / io_read / process_wait and the loop is in select. The
# handler raises, closes the selector, or calls exit. The blocking call must
# end promptly, and afterwards the selector must be sane: select(0) answers an
# Integer, wakeup answers false (nobody is blocked) and really wakes the next
# blocking select, parked operations still complete, close succeeds (no
# "selector is in use" RuntimeError). No Ruby code may run while the
# selector's state is borrowed.

require_relative "support"

module SoundnessTrap
  include Soundness::Helpers

  class Boom < StandardError; end

  SIGNAL_DELAY = 0.1

  # Sends SIGUSR1 to this process after SIGNAL_DELAY, from a Ruby thread or a
  # separate process (which leaves this one single-threaded).
  def send_usr1(sender)
    if sender == :thread
      Thread.new do
        sleep SIGNAL_DELAY
        Process.kill(:USR1, Process.pid)
      end
    else
      Process.spawn("/bin/sh", "-c", "sleep #{SIGNAL_DELAY}; kill -USR1 #{Process.pid}")
    end
  end

  def reap_sender(sender)
    sender.is_a?(Thread) ? sender.join(2) : Process.wait(sender)
  end

  # Parks one fiber in the operation named by `kind` (or nothing for :select).
  # Returns a lambda that makes the operation complete and checks its result.
  def park(kind, selector, input, output)
    case kind
    when :select
      -> {}
    when :io_wait
      result = nil
      fiber = Fiber.new { result = selector.io_wait(Fiber.current, input, IO::READABLE) }
      fiber.transfer
      lambda do
        output.write("x")
        assert drive_until(selector) { !fiber.alive? }, "the parked io_wait never completed after the trap"
        assert_equal IO::READABLE, result
      end
    when :io_read
      buffer = IO::Buffer.new(8)
      result = nil
      fiber = Fiber.new { result = selector.io_read(Fiber.current, input, buffer, 4) }
      fiber.transfer
      lambda do
        output.write("data")
        assert drive_until(selector) { !fiber.alive? }, "the parked io_read never completed after the trap"
        assert_equal [4, "data"], [result, buffer.get_string(0, 4)]
      end
    when :process_wait
      pid = Process.spawn("sleep", "5")
      status = nil
      fiber = Fiber.new { status = selector.process_wait(Fiber.current, pid, 0) }
      fiber.transfer
      lambda do
        Process.kill(:KILL, pid)
        assert drive_until(selector) { !fiber.alive? }, "the parked process_wait never completed after the trap"
        assert_kind_of Process::Status, status
        assert_equal pid, status.pid
      end
    end
  end

  # After the trap: nobody is blocked, the selector answers and still works.
  def assert_selector_sane(selector)
    assert_equal false, selector.wakeup, "wakeup answered true although no select is blocked"
    assert_kind_of Integer, selector.select(0), "select(0) after the trap"
    waker = Thread.new do
      deadline = monotonic + 3
      sleep 0.005 until selector.wakeup || monotonic > deadline
    end
    _, elapsed = timed { selector.select(3) }
    waker.join
    assert_operator elapsed, :<, 1.5, "wakeup from another thread did not end select(3) after the trap"
  end

  def trap_case(kind, handler, sender, duration: 3)
    isolated(label: "#{kind}, handler #{handler}, signal from a #{sender}") do
      selector = new_selector(Fiber.current)
      input, output = IO.pipe
      complete = park(kind, selector, input, output)
      selector.select(0)
      trap("USR1") do
        case handler
        when :raise then raise Boom, "boom"
        when :close then selector.close
        end
      end
      step "parked #{kind}; waiting in select(#{duration.inspect})"
      signaller = send_usr1(sender)
      # A selector may return early (the pure-Ruby one polls children), so
      # select is called again until the handler has run, for at most 2 s.
      outcome, elapsed = timed do
        deadline = monotonic + 2
        result = nil
        loop do
          result = selector.select(duration)
          break if handler == :close && selector.closed?
          break if monotonic > deadline
        end
        result
      end
      step "select ended with #{outcome.inspect} after #{elapsed.round(3)}s"
      reap_sender(signaller)
      assert_operator elapsed, :<, 1.5, "select(#{duration.inspect}) was not ended by the trap handler"

      case handler
      when :raise
        assert_kind_of Boom, outcome, "the trap handler's exception must come out of select"
        assert_selector_sane(selector)
        step "selector sane"
        complete.call
      when :close
        unless outcome.is_a?(Integer) || outcome.is_a?(IOError)
          flunk "select must return or raise IOError when a trap handler closed the selector, got #{outcome.inspect}"
        end
        assert selector.closed?, "closed? after a trap handler closed the selector"
        assert_equal false, selector.wakeup
      end
      selector.close
      assert selector.closed?
      selector.close
      true
    ensure
      input&.close
      output&.close
    end
  end

  %i[select io_wait io_read process_wait].each do |kind|
    %i[thread process].each do |sender|
      define_method("test_raising_handler_during_#{kind}_signal_from_a_#{sender}") do
        require_selector_method(:process_wait) if kind == :process_wait
        trap_case(kind, :raise, sender)
      end
    end
  end

  def test_raising_handler_during_select_nil_signal_from_a_process
    trap_case(:select, :raise, :process, duration: nil)
  end

  def test_raising_handler_during_select_nil_signal_from_a_thread
    trap_case(:select, :raise, :thread, duration: nil)
  end

  def test_raising_handler_during_io_read_select_nil
    trap_case(:io_read, :raise, :process, duration: nil)
  end

  %i[select io_wait io_read process_wait].each do |kind|
    define_method("test_closing_handler_during_#{kind}") do
      trap_case(kind, :close, :process)
    end
  end

  def test_closing_handler_during_select_nil_signal_from_a_thread
    trap_case(:select, :close, :thread, duration: nil)
  end

  # A `trap("TERM") { exit }` server: exit from the handler while select
  # blocks; the ensure clause (or at_exit) closes the selector. Runs in a
  # fresh Ruby, which leaves through exit as a real server does, and calls
  # select in a loop as a scheduler does: select may return early (a
  # SIGCHLD, say, ends the wait and runs no handler), which the protocol
  # allows; only the handler's exit may end the loop, and a lost one is a
  # hang that the child's timeout reports.
  def exit_script(kind)
    variant = selector_variant
    <<~RUBY
      require "tempfile"
      env = #{variant.env.inspect}
      env.each { |key, value| ENV[key] = value }
      selector = IO::Event::Selector.const_get(#{variant.class_name.inspect}).new(Fiber.current)
      input, output = IO.pipe
      case #{kind.inspect}
      when :io_wait
        Fiber.new { selector.io_wait(Fiber.current, input, IO::READABLE) }.transfer
      when :io_read
        Fiber.new { selector.io_read(Fiber.current, input, IO::Buffer.new(8), 4) }.transfer
      end
      trap("USR1") { exit 7 }
      Process.spawn("/bin/sh", "-c", "sleep #{SIGNAL_DELAY}; kill -USR1 \#{Process.pid}")
      at_exit do
        notes = []
        begin
          notes << "wakeup=\#{selector.wakeup.inspect}"
          selector.close
          notes << "closed=\#{selector.closed?}"
        rescue Exception => error
          notes << "close raised \#{error.class}: \#{error.message}"
        end
        report(notes + ["select returned \#{$returns.inspect}"])
      end
      $returns = []
      step "blocking"
      loop { $returns << selector.select(nil) }
    RUBY
  end

  %i[select io_wait io_read].each do |kind|
    define_method("test_exiting_handler_during_#{kind}_lets_at_exit_close_the_selector") do
      selector_class
      notes, status, stderr = isolated_script(exit_script(kind), label: "ruby script (#{kind}, trap exit)")
      assert_equal 7, status.exitstatus, "the script must leave through the handler's exit 7: #{describe_status_line(status, stderr)} #{notes.inspect}"
      assert_equal ["wakeup=false", "closed=true"], notes&.first(2), "at_exit after a trap handler's exit (#{notes.inspect})"
    end
  end

  def describe_status_line(status, stderr)
    "#{status.inspect} #{stderr.lines.grep(/BUG|Error|error/).first(2).join(' ')}"
  end
end

SelectorVariants.define("SoundnessTrap", SoundnessTrap, variants: SelectorVariants::PLAIN)
