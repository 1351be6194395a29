# frozen_string_literal: true

class IO
  module Event
    module Selector
      class Select
        # A ready-queue entry for the fiber that called #resume, #yield or
        # #raise. It is emptied when that fiber regains control, so a stale
        # entry never resumes it a second time.
        class Ready
          def initialize(fiber)
            @fiber = fiber
          end

          def alive?
            fiber = @fiber
            fiber ? fiber.alive? : false
          end

          def transfer(*arguments)
            @fiber&.transfer(*arguments)
          end

          def cancel
            @fiber = nil
          end
        end
        private_constant :Ready

        # One fiber parked in #io_wait or #process_wait. The selector sets
        # #result (or #error) before resuming the fiber; the fiber cancels the
        # waiter on every exit path, so a late event cannot reach it.
        class Waiter
          def initialize(fiber, events = 0)
            @fiber = fiber
            @events = events
            @result = nil
            @error = nil
          end

          attr_reader :fiber, :events
          attr_accessor :result, :error

          def waiting?
            !@fiber.nil?
          end

          def cancel
            @fiber = nil
          end

          # Switches to the fiber (once) with #result/#error as set by the
          # caller. Returns false if the waiter was cancelled or its fiber is dead.
          def wake
            fiber = @fiber
            return false unless fiber

            @fiber = nil
            return false unless fiber.alive?

            fiber.transfer(@result)
            true
          end
        end
        private_constant :Waiter

        # A fiber parked in #process_wait: the child it waits for.
        class ProcessWaiter < Waiter
          def initialize(fiber, pid, flags)
            super(fiber)
            @pid = pid
            @flags = flags | ::Process::WNOHANG
          end

          # Reaps the child if it changed state (WNOHANG), keeping the status
          # in #result. Returns whether it did.
          def poll
            @result = ::Process::Status.wait(@pid, @flags)
            !@result.nil?
          end
        end
        private_constant :ProcessWaiter
      end
    end
  end
end
