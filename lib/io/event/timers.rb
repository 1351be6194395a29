# frozen_string_literal: true

require_relative "priority_heap"

class IO
  module Event
    # The timer queue used by fiber schedulers such as `async`: schedule a block
    # at a monotonic time, ask how long until the next one, fire the due ones.
    # Not thread safe: use it from the event-loop thread.
    class Timers
      # One scheduled block. Returned by #after and #schedule.
      class Handle
        # Timers due at the same time fire in the order they were scheduled.
        def initialize(time, block, sequence)
          @time = time
          @block = block
          @sequence = sequence
        end

        # The monotonic time (seconds, as Timers#now) the block is due at.
        attr_reader :time

        # The block, or nil once cancelled.
        attr_reader :block

        # Orders by time, then by scheduling order.
        def <(other)
          @time < other.time || (@time == other.time && @sequence < other.sequence)
        end

        def >(other)
          other < self
        end

        def call(...)
          @block.call(...)
        end

        # Stops the block from running. Idempotent.
        def cancel!
          @block = nil
        end

        def cancelled?
          @block.nil?
        end

        protected

        attr_reader :sequence
      end

      def initialize
        @heap = PriorityHeap.new
        # Handles scheduled since the last flush; they join the heap at the next
        # #size/#wait_interval/#fire, so a block that schedules a timer while
        # #fire runs never makes that same #fire loop forever.
        @scheduled = []
        @sequence = 0
      end

      # The number of pending (not cancelled, not yet fired) timers, give or
      # take cancelled ones still in the heap.
      def size
        flush!
        @heap.size
      end

      # Schedules +block+ (any object with #call) at the absolute monotonic
      # +time+. Returns the Handle.
      def schedule(time, block)
        raise ArgumentError, "timer block must respond to #call" unless block.respond_to?(:call)

        @sequence += 1
        handle = Handle.new(Float(time), block, @sequence)
        @scheduled << handle
        handle
      end

      # Schedules the block +offset+ seconds from now. Returns the Handle.
      def after(offset, &block)
        raise ArgumentError, "Timers#after needs a block" unless block

        schedule(now + Float(offset), block)
      end

      # Seconds until the next timer is due (negative when it is overdue), or
      # nil when there is none.
      def wait_interval(now = self.now)
        flush!
        while (handle = @heap.peek)
          return handle.time - now unless handle.cancelled?

          @heap.pop
        end
        nil
      end

      # The monotonic clock, in Float seconds.
      def now
        ::Process.clock_gettime(::Process::CLOCK_MONOTONIC)
      end

      # Calls every timer due at +now+, earliest first, passing it +now+.
      # Timers scheduled by those blocks wait for the next call.
      def fire(now = self.now)
        flush!
        while (handle = @heap.peek)
          if handle.cancelled?
            @heap.pop
          elsif handle.time <= now
            @heap.pop
            handle.call(now)
          else
            break
          end
        end
      end

      private

      def flush!
        return if @scheduled.empty?

        scheduled = @scheduled
        @scheduled = []
        scheduled.each { |handle| @heap.push(handle) unless handle.cancelled? }
      end
    end
  end
end
