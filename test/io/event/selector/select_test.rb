# frozen_string_literal: true

require_relative "../../../test_helper"

# What io-event's Select has beyond the contract: io_select and the errno
# constants.
class SelectSelectorExtrasTest < Minitest::Test
  def setup
    @selector = IO::Event::Selector::Select.new(Fiber.current)
  end

  def teardown
    @selector.close
  end

  def test_errno_constants_are_negative_errnos
    assert_equal(-Errno::EAGAIN::Errno, IO::Event::Selector::Select::EAGAIN)
    assert_equal(-Errno::EWOULDBLOCK::Errno, IO::Event::Selector::Select::EWOULDBLOCK)
  end

  def test_io_select_answers_as_io_select
    input, output = IO.pipe
    assert_nil @selector.io_select([input], nil, nil, 0.01)
    output.write(".")
    assert_equal [[input], [output], []], @selector.io_select([input], [output], [], 1)
    threads = Thread.list.size
    assert_nil @selector.io_select([], nil, nil, 0)
    assert_equal threads, Thread.list.size, "the helper thread outlived the call"
  ensure
    input&.close
    output&.close
  end

  def test_io_select_lets_other_fibers_run_under_a_scheduler
    require_relative "../../../support/scheduler"
    input, output = IO.pipe
    order = []
    thread = Thread.new do
      scheduler = IOEventTestScheduler.new(IO::Event::Selector::Select)
      Fiber.set_scheduler(scheduler)
      Fiber.schedule do
        order << :selecting
        order << scheduler.selector.io_select([input], nil, nil, 2)&.first&.size
      end
      Fiber.schedule do
        order << :other
        output.write(".")
      end
    ensure
      Fiber.set_scheduler(nil)
    end
    assert thread.join(5)
    assert_equal [:selecting, :other, 1], order
  ensure
    input&.close
    output&.close
  end
end
