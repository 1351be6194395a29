# frozen_string_literal: true

require_relative "../../test_helper"

class InterruptTest < Minitest::Test
  Interrupt = IO::Event.const_get(:Interrupt)

  def setup
    @interrupt = Interrupt.new
  end

  def teardown
    @interrupt.close
  end

  def readable?(timeout = 0)
    !IO.select([@interrupt.to_io], nil, nil, timeout).nil?
  end

  def test_is_a_private_constant
    assert_raises(NameError) { IO::Event::Interrupt }
  end

  def test_signal_makes_it_readable_and_clear_drains_it
    refute readable?
    assert_equal true, @interrupt.signal
    assert readable?
    assert_equal 1, @interrupt.clear
    refute readable?
    assert_equal 0, @interrupt.clear
  end

  def test_several_signals_are_all_drained_by_one_clear
    3.times { @interrupt.signal }
    assert_equal 3, @interrupt.clear
    refute readable?
  end

  def test_signal_from_another_thread_wakes_a_blocked_select
    thread = Thread.new do
      sleep 0.05
      @interrupt.signal
    end
    started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    assert readable?(5), "the signal did not wake IO.select"
    assert_operator Process.clock_gettime(Process::CLOCK_MONOTONIC) - started, :<, 2
  ensure
    thread&.join
  end

  def test_signal_never_blocks_when_the_pipe_is_full
    written = 0
    finished = Thread.new do
      (GC.stress ? 70_000 : 200_000).times { written += 1 if @interrupt.signal }
      :done
    end
    assert_equal :done, finished.join(10)&.value, "signal blocked on a full pipe"
    assert_operator written, :>, 0
    assert_operator written, :<, 70_000, "a pipe (64 KiB) should be full by now"
    refute @interrupt.signal
    assert_equal written, @interrupt.clear
    assert_equal true, @interrupt.signal
  end

  def open_descriptor?(number)
    File.exist?("/proc/self/fd/#{number}") # a stat: opens no descriptor itself
  end

  def test_close_is_idempotent_and_releases_both_descriptors
    interrupt = Interrupt.new
    numbers = [interrupt.to_io.fileno, interrupt.instance_variable_get(:@output).fileno]
    assert(numbers.all? { |number| open_descriptor?(number) })
    refute_predicate interrupt, :closed?
    interrupt.close
    interrupt.close
    assert_predicate interrupt, :closed?
    # Nothing in this test opens descriptors, so the numbers cannot be reused.
    assert(numbers.none? { |number| open_descriptor?(number) }, "a descriptor stayed open")
  end

  def test_signal_and_clear_after_close_do_not_raise
    @interrupt.close
    assert_equal false, @interrupt.signal
    assert_equal 0, @interrupt.clear
  end

  def test_signal_during_close_from_another_thread_does_not_raise
    errors = Queue.new
    signaller = Thread.new do
      5000.times { @interrupt.signal }
    rescue Exception => error # rubocop:disable Lint/RescueException
      errors << error
    end
    sleep 0.001
    @interrupt.close
    signaller.join
    assert_predicate errors, :empty?
  end

  def test_descriptors_are_close_on_exec
    [@interrupt.to_io].each { |io| assert io.close_on_exec? }
  end
end

require_relative "../../support/selector_variants"

# IO::Event::Interrupt.attach(selector): a fiber of the interrupt's own waits
# on the pipe through the selector, so #signal wakes any selector; closing the
# interrupt while that fiber waits leaks no IOError out of it.
module AttachedInterruptContract
  include SelectorDriver

  def attached
    @attached = IO::Event.const_get(:Interrupt).attach(selector)
  end

  def teardown
    @attached&.close
    super
  end

  def test_signal_wakes_a_blocked_select_and_the_fiber_drains_the_pipe
    interrupt = attached
    assert interrupt.fiber.alive?
    signaller = Thread.new do
      sleep 0.05
      interrupt.signal
    end
    started = monotonic
    selector.select(5)
    assert_operator monotonic - started, :<, 2, "the signal did not end select"
    signaller.join
    drive(timeout: 2) { IO.select([interrupt.to_io], nil, nil, 0).nil? }
    assert interrupt.fiber.alive?, "the fiber must go on waiting"
  end

  def test_closing_while_the_fiber_waits_leaks_no_io_error
    interrupt = attached
    interrupt.close
    5.times { selector.select(0.01) }
    raise_fiber_errors
    assert_predicate interrupt, :closed?
  end

  def test_closing_after_a_signal_leaks_no_io_error
    interrupt = attached
    interrupt.signal
    interrupt.close
    5.times { selector.select(0.01) }
    assert_predicate interrupt, :closed?
  end
end

SelectorVariants.define("AttachedInterrupt", AttachedInterruptContract)
