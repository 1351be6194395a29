# frozen_string_literal: true

require_relative "priority_heap"

class IO
  module Event
    # The timer queue used by fiber schedulers such as `async`: schedule a block
    # at a monotonic time, ask how long until the next one, fire the due ones.
    # Not thread safe: use it from the event-loop thread.
    class Timers
      # Cancelled timers stay in the heap (cancelling is O(1)) until they reach
      # the top, unless at least this many are cancelled and they are more
      # than half the heap: then the heap is rebuilt without them in one pass.
      COMPACT_MINIMUM_COUNT = 128

      # One scheduled block. Returned by #after and #schedule.
      class Handle
        # Timers due at the same time fire in the order they were scheduled.
        def initialize(time, block, sequence)
          @time = time
          @block = block
          @sequence = sequence
          @timers = nil
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
          return if @block.nil?

          @block = nil
          timers = @timers
          return unless timers

          @timers = nil
          timers.cancelled!(self)
        end

        # Called by +timers+ when the handle joins its heap, so that a later
        # #cancel! is counted there.
        def schedule!(timers)
          @timers = timers
        end

        # Called when the handle leaves the heap (fired, or dropped cancelled).
        def removed!
          @timers = nil
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
        # Cancelled handles still in the heap.
        @cancelled = 0
      end

      # The number of timers in the heap: pending ones, plus cancelled ones not
      # yet dropped (see COMPACT_MINIMUM_COUNT). 0 once every one is cancelled.
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

      # Schedules the block +offset+ seconds (anything with #to_f) from now.
      # Returns the Handle.
      def after(offset, &block)
        raise ArgumentError, "Timers#after needs a block" unless block

        # #to_f, as io-event: an object without it raises NoMethodError.
        schedule(now + offset.to_f, block)
      end

      # Seconds until the next timer is due (negative when it is overdue), or
      # nil when there is none.
      def wait_interval(now = self.now)
        flush!
        while (handle = @heap.peek)
          return handle.time - now unless handle.cancelled?

          drop_top
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
            drop_top
          elsif handle.time <= now
            @heap.pop
            handle.removed!
            handle.call(now)
          else
            break
          end
        end
      end

      # Counts a handle in the heap that was cancelled (Handle#cancel! calls
      # it).
      def cancelled!(_handle)
        @cancelled += 1
      end

      private

      # Moves the handles scheduled since the last call into the heap
      # (dropping those already cancelled), and drops the cancelled ones from
      # the heap when they are many (COMPACT_MINIMUM_COUNT) and more than half
      # of it, or all of it: one O(n) rebuild does both.
      def flush!
        if compact?
          @heap.heapify do |contents|
            contents.reject! do |handle|
              next false unless handle.cancelled?

              handle.removed!
              true
            end
            @scheduled.each { |handle| contents << handle if adopt?(handle) }
          end
          @cancelled = 0
        else
          @scheduled.each { |handle| @heap.push(handle) if adopt?(handle) }
        end
        @scheduled.clear
      end

      def compact?
        return false if @cancelled.zero?

        @cancelled == @heap.size || (@cancelled >= COMPACT_MINIMUM_COUNT && @cancelled * 2 > @heap.size)
      end

      # Whether +handle+ joins the heap (it is not cancelled); if so, tells it.
      def adopt?(handle)
        return false if handle.cancelled?

        handle.schedule!(self)
        true
      end

      # Pops the cancelled handle at the top of the heap.
      def drop_top
        @heap.pop.removed!
        @cancelled -= 1 if @cancelled.positive?
      end
    end
  end
end
