# frozen_string_literal: true

require_relative "helpers"

module SelectorContract
  # Several selectors, close, and fork.
  module Lifecycle
    include Helpers

    # --- close and lifecycle -----------------------------------------------------

    def test_can_create_several_selectors
      selectors = 8.times.map { make_selector(Fiber.current) }
      selectors.each { |other| assert_kind_of Integer, other.select(0) }
      selectors.each(&:close)
      assert(selectors.all?(&:closed?))
    end

    # The native and Select selectors ignore a second close; io-event's Debug
    # wrapper reports it (RuntimeError "already closed"), and so does ours.
    def test_close_is_idempotent
      refute selector.closed?
      selector.close
      assert selector.closed?
      if defined?(IO::Event::Debug::Selector) && selector.is_a?(IO::Event::Debug::Selector)
        error = assert_raises(RuntimeError) { selector.close }
        assert_match(/already closed/, error.message)
      else
        selector.close
      end
      assert selector.closed?
    end

    def test_close_with_a_fiber_parked_in_io_wait
      input, output = pipe
      log = []
      parked_waiter(input, IO::READABLE, log)
      selector.close
      assert selector.closed?
      output.write("x")
      assert_empty log, "closing must not resume parked fibers by itself"
    end

    def test_forked_child_sees_closed
      selector.select(0)
      refute selector.closed?

      pid = fork do
        code =
          begin
            selector.closed? ? 0 : 1
          rescue Exception # rubocop:disable Lint/RescueException
            2
          end
        exit!(code)
      end
      _, status = Process.waitpid2(pid)
      assert_equal 0, status.exitstatus, "the child did not see closed? == true (1) or raised (2)"
      refute selector.closed?, "the parent's selector stays open"
      assert_kind_of Integer, selector.select(0)
    end
  end
end
