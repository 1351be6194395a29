# frozen_string_literal: true

# Issue 9, items 6 and 12: Thread#raise and Thread#kill against a thread whose
# loop is in select, with and without Thread.handle_interrupt masks, while its
# fibers are parked in io_read / io_wait. Everything must be prompt: a masked
# pending interrupt makes select return at once (0), an unmasked one ends the
# blocking wait, Thread#kill ends the thread. (The detailed masked-interrupt
# cases are in test/io/event/selector/pending_interrupt_test.rb; here is one
# smoke case per selector, plus the fiber and kill cases.)

require_relative "support"

module SoundnessThreadInterrupt
  include Soundness::Helpers

  class Boom < StandardError; end

  # Thread#join that does not re-raise the thread's exception: true when the
  # thread ended within `timeout`.
  def ended_within?(thread, timeout)
    !thread.join(timeout).nil?
  rescue Exception # rubocop:disable Lint/RescueException
    true
  end

  def new_thread(&block)
    thread = Thread.new(&block)
    thread.report_on_exception = false
    thread
  end

  # Item 6 smoke: an interrupt already pending but masked.
  def test_masked_pending_interrupt_makes_select_nil_return_at_once
    isolated(label: "masked pending Thread#raise, then select(nil)") do
      selector = new_selector(Fiber.current)
      result = elapsed = nil
      delivered = nil
      begin
        Thread.handle_interrupt(Object => :never) do
          Thread.current.raise(Boom, "pending")
          result, elapsed = timed { selector.select(nil) }
        end
      rescue Boom => error
        delivered = error
      end
      assert_operator elapsed, :<, 1.0, "select(nil) blocked with a masked interrupt pending"
      assert_equal 0, result
      assert_kind_of Boom, delivered, "the masked interrupt is delivered when the mask ends"
      assert_kind_of Integer, selector.select(0)
      selector.close
      true
    end
  end

  # Item 6 smoke: the masked interrupt arrives while the thread is blocked.
  def test_masked_interrupt_arriving_during_select_nil_ends_it
    isolated(label: "masked Thread#raise during select(nil) on another thread") do
      ready = Queue.new
      thread = new_thread do
        selector = new_selector(Fiber.current)
        outcome = nil
        begin
          Thread.handle_interrupt(Object => :never) do
            ready << true
            outcome = timed { selector.select(nil) }
          end
        rescue Boom => error
          outcome = (outcome || []) + [error]
        end
        selector.close
        outcome
      end
      ready.pop
      sleep 0.1
      thread.raise(Boom, "masked")
      finished = ended_within?(thread, 1.5)
      unless finished
        thread.kill
        ended_within?(thread, 1)
        flunk "select(nil) under Thread.handle_interrupt(Object => :never) did not return after Thread#raise"
      end
      result, elapsed, delivered = thread.value
      assert_kind_of Integer, result
      assert_operator elapsed, :<, 1.0
      assert_kind_of Boom, delivered
      true
    end
  end

  # A loop thread: fibers parked in io_read and io_wait, the loop in
  # select(nil) until told to stop. Returns [thread, pipes, info].
  def loop_thread(mask: nil)
    pipes = Array.new(2) { IO.pipe }
    info = {}
    ready = Queue.new
    thread = new_thread do
      selector = new_selector(Fiber.current)
      info[:selector] = selector
      buffer = IO::Buffer.new(16)
      info[:buffer] = buffer
      read_fiber = Fiber.new do
        body = proc do
          length = selector.io_read(Fiber.current, pipes[0][0], buffer, 4)
          info[:read] = [length, buffer.get_string(0, 4)]
        end
        mask ? Thread.handle_interrupt(Boom => mask, &body) : body.call
      rescue Boom => error
        info[:read_error] = error
      end
      read_fiber.transfer
      Fiber.new { info[:wait] = selector.io_wait(Fiber.current, pipes[1][0], IO::READABLE) }.transfer
      ready << true
      deadline = monotonic + 3
      selector.select(nil) while (read_fiber.alive? || !info[:wait]) && monotonic < deadline
      info[:done] = true
      selector.close
    rescue Exception => error # rubocop:disable Lint/RescueException
      ready << error
      raise
    end
    started = ready.pop
    raise started if started.is_a?(Exception)
    sleep 0.1
    [thread, pipes, info]
  end

  def test_thread_raise_ends_a_loop_blocked_with_fibers_in_io_read_and_io_wait
    isolated(label: "Thread#raise into a loop thread") do
      thread, pipes, info = loop_thread
      started = monotonic
      thread.raise(Boom, "stop")
      joined = ended_within?(thread, 1.5)
      elapsed = monotonic - started
      flunk "Thread#raise did not end select(nil) within 1.5s" unless joined
      assert_raises(Boom) { thread.value }
      assert_operator elapsed, :<, 1.0
      step "thread ended by Thread#raise; closing its selector from the main thread"
      selector = info[:selector]
      _, close_time = timed { selector.close rescue nil } # rubocop:disable Style/RescueModifier
      assert_operator close_time, :<, 1.0, "closing the dead thread's selector took #{close_time.round(2)}s"
      pipes.each { |_, output| output.write("late") }
      sleep 0.05
      if selector.closed?
        assert info[:buffer].get_string.each_byte.all?(&:zero?), "the kernel wrote into the buffer after close"
      end
      pipes.flatten.each(&:close)
      true
    end
  end

  # The reading fiber masks Boom around io_read: the thread's mask is in
  # effect while the loop runs select. The loop must not hang: the read
  # completes when data arrives, and Boom is delivered once the mask ends.
  %i[never on_blocking].each do |mask|
    define_method("test_thread_raise_while_a_fiber_masks_it_with_#{mask}_around_io_read") do
      isolated(label: "Thread#raise, fiber masked #{mask}") do
        thread, pipes, info = loop_thread(mask: mask)
        thread.raise(Boom, "masked")
        step "raised into the loop thread"
        sleep 0.1
        pipes[0][1].write("data")
        pipes[1][1].write("x")
        joined = ended_within?(thread, 2)
        unless joined
          thread.kill
          ended_within?(thread, 1)
          flunk "the loop thread hung after Thread#raise with a fiber masking it (#{info.keys.inspect})"
        end
        outcome = begin
          thread.value
          :finished
        rescue Boom
          :boom
        end
        step "thread #{outcome}; #{info.reject { |key, _| %i[selector buffer].include?(key) }.inspect}"
        delivered = outcome == :boom || info[:read_error]
        assert delivered, "Boom was never delivered"
        if info[:read]
          assert_equal [4, "data"], info[:read]
        end
        pipes.flatten.each(&:close)
        true
      end
    end
  end

  def test_thread_kill_of_a_thread_blocked_in_select
    isolated(label: "Thread#kill of a loop thread") do
      thread, pipes, info = loop_thread
      started = monotonic
      thread.kill
      joined = ended_within?(thread, 1.5)
      flunk "Thread#kill did not end select(nil) within 1.5s" unless joined
      assert_operator monotonic - started, :<, 1.0
      refute info[:done], "the killed thread kept running"
      selector = info[:selector]
      selector.close rescue nil # rubocop:disable Style/RescueModifier
      pipes.flatten.each(&:close)
      GC.start
      true
    end
  end

  # Thread#raise delivered while the loop thread runs its select under
  # handle_interrupt(:on_blocking): the blocking wait is where it lands.
  def test_thread_raise_on_blocking_lands_in_the_blocking_select
    isolated(label: "Thread#raise with :on_blocking") do
      ready = Queue.new
      thread = new_thread do
        selector = new_selector(Fiber.current)
        Thread.handle_interrupt(Boom => :on_blocking) do
          ready << true
          deadline = monotonic + 3
          selector.select(nil) while monotonic < deadline
        end
        :not_interrupted
      ensure
        selector&.close
      end
      ready.pop
      sleep 0.1
      thread.raise(Boom, "on blocking")
      flunk "Thread#raise under :on_blocking did not end select(nil)" unless ended_within?(thread, 1.5)
      assert_raises(Boom) { thread.value }
      true
    end
  end
end

SelectorVariants.define("SoundnessThreadInterrupt", SoundnessThreadInterrupt, variants: SelectorVariants::PLAIN)
