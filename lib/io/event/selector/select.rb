# frozen_string_literal: true

require_relative "../implementation"
require_relative "../support"
require_relative "nonblock"
require_relative "../interrupt"
require_relative "select/waiters"
require_relative "select/transfer"
require_relative "select/wait"

class IO
  module Event
    module Selector
      # The portable selector: IO.select plus a self-pipe, in plain Ruby. It is
      # the last resort when neither io_uring nor epoll is available, and the
      # reference the native selectors are tested against (see PROTOCOL.md).
      #
      # Everything but #wakeup and #push must be called on the thread that
      # created it. A #select that may block longer than SHORT_WAIT on the main
      # thread waits on a helper thread's IO.select, so that a trapped signal
      # ends it (see #select_on_main_thread); otherwise it calls IO.select
      # directly. Children in #process_wait are polled (see there).
      class Select
        IMPLEMENTATION = IO::Event::IMPLEMENTATION

        # Negative errnos, as io_read and io_write return them.
        EAGAIN = -Errno::EAGAIN::Errno
        EWOULDBLOCK = -Errno::EWOULDBLOCK::Errno

        include Transfer
        include Wait

        # Bounds on how long a blocking #select waits before polling children
        # again while some fiber is in #process_wait.
        PROCESS_POLL_MINIMUM = 0.001
        PROCESS_POLL_MAXIMUM = 0.05
        private_constant :PROCESS_POLL_MINIMUM, :PROCESS_POLL_MAXIMUM

        # Durations above this many seconds (68 years) wait until woken.
        LONGEST_WAIT = 2**31
        private_constant :LONGEST_WAIT

        def initialize(loop)
          @loop = loop
          @owner = Process.pid

          @ready = []
          @waiting = {}.compare_by_identity # IO => [Waiter, ...] in arrival order

          # Fibers in #process_wait, and how long the next blocking #select
          # may wait before polling them again (it backs off while they wait).
          @processes = []
          @process_poll = PROCESS_POLL_MINIMUM

          @interrupt = Interrupt.new
          @blocked = false
          @closed = false
          @idle_duration = 0.0
        end

        # The event-loop fiber given to new.
        attr_reader :loop

        # Seconds the last #select spent blocked in IO.select (0.0 if it did not block).
        attr_reader :idle_duration

        # Whether #close was called, or this is a forked child of the process
        # that created the selector (a child must not drain the parent's pipe).
        def closed?
          @closed || Process.pid != @owner
        end

        # Releases the self-pipe and forgets every parked fiber. Idempotent.
        def close
          return if @closed

          @closed = true
          @processes.clear
          @waiting.clear
          @ready.clear
          @interrupt.close
          nil
        end

        # Thread safe. Makes a blocked #select return; true if it was blocked.
        def wakeup
          return false if closed?

          if @blocked
            @interrupt.signal
            true
          else
            false
          end
        end

        # From a user fiber: switch to the event loop, returning what the loop
        # later resumes this fiber with. On the loop fiber itself: nil.
        def transfer
          return nil if Fiber.current.equal?(@loop)

          @loop.transfer
        end

        # Queues the current fiber, then switches to +fiber+ with +arguments+.
        def resume(fiber, *arguments)
          fiber!(fiber, :transfer)
          entry = enqueue_current
          fiber.transfer(*arguments)
        ensure
          dequeue(entry) if entry
        end

        # Queues the current fiber and switches to the event loop.
        def yield
          entry = enqueue_current
          @loop.transfer
        ensure
          dequeue(entry) if entry
        end

        # Appends +fiber+ to the ready queue; it is resumed by the next #select.
        def push(fiber)
          fiber!(fiber)
          @ready.push(fiber)
          nil
        end

        # Queues the current fiber, then raises in +fiber+ (as Fiber#raise).
        def raise(fiber, *arguments, **options)
          fiber!(fiber, :raise)
          entry = enqueue_current
          if options.empty?
            fiber.raise(*arguments)
          else
            fiber.raise(*arguments, **options)
          end
        ensure
          dequeue(entry) if entry
        end

        # Whether a fiber is waiting in the ready queue.
        def ready?
          !@ready.empty?
        end

        # Parks +fiber+ until +io+ is ready for any of +events+ (IO::READABLE,
        # IO::PRIORITY, IO::WRITABLE). Returns the ready subset of +events+, or
        # false when the fiber was resumed some other way. Raises IOError if
        # +io+ is, or gets, closed.
        def io_wait(fiber, io, events)
          check_open!
          fiber!(fiber)
          Kernel.raise TypeError, "expected an IO, not #{io.class}" unless io.respond_to?(:to_io)
          integer!(events, "events")
          Kernel.raise IOError, "closed stream" if io.to_io.closed?
          # Parking the loop on itself would never come back.
          Kernel.raise "io_wait called on the event loop fiber" if Fiber.current.equal?(@loop)

          waiter = Waiter.new(fiber, events)
          (@waiting[io] ||= []) << waiter

          @loop.transfer

          Kernel.raise waiter.error if waiter.error

          waiter.result || false
        ensure
          forget(io, waiter) if waiter
        end

        # IO.select(readable, writable, priority, timeout) on a helper thread,
        # whose join lets other fibers run under a fiber scheduler (the
        # scheduler's io_select hook can forward here). Returns IO.select's
        # answer.
        def io_select(readable, writable, priority, timeout)
          thread = ::Thread.new do
            ::Thread.current.report_on_exception = false
            ::IO.select(readable, writable, priority, timeout)
          end
          thread.value
        ensure
          thread&.kill
        end

        # Closes the raw descriptor +fd+. Returns true.
        def io_close(fd)
          integer!(fd, "fd")
          # Blocking, so a scheduler's io_close hook is not re-entered.
          Support.blocking { ::IO.for_fd(fd, autoclose: true).close }
          true
        end

        # Parks +fiber+ until child +pid+ changes state (waitpid +pid+ and
        # +flags+: pid <= 0 and WUNTRACED work too). Returns a Process::Status,
        # or false when the fiber was resumed some other way; with WNOHANG it
        # returns at once (nil if nothing changed).
        #
        # There is no portable way to be woken by a child, so #select polls the
        # waiting children with WNOHANG, backing off from 1 ms to 50 ms. A child
        # is only reaped by the poll that resumes its waiter at once: an
        # interrupted wait never consumes the exit status.
        def process_wait(fiber, pid, flags)
          check_open!
          fiber!(fiber)
          integer!(pid, "pid")
          integer!(flags, "flags")
          if flags.anybits?(::Process::WNOHANG)
            return Support.blocking { ::Process::Status.wait(pid, flags) }
          end

          waiter = ProcessWaiter.new(fiber, pid, flags)
          return waiter.result if Support.blocking { waiter.poll }

          @processes << waiter
          @process_poll = PROCESS_POLL_MINIMUM

          @loop.transfer

          waiter.waiting? ? false : waiter.result
        ensure
          if waiter
            waiter.cancel
            index = @processes.index { |queued| queued.equal?(waiter) }
            @processes.delete_at(index) if index
          end
        end

        # Runs the ready queue once (FIFO; fibers queued meanwhile wait for the
        # next call), resumes fibers whose IO or process is ready, and, only if
        # none of that ran anything, blocks up to +duration+ seconds (nil:
        # forever, 0: never) until an event, #wakeup or Thread#raise. Returns
        # the number of IOs and processes handled.
        def select(duration = nil)
          check_open!
          timeout = validate_duration(duration)

          ran = run_ready
          return 0 if @closed

          count = poll_processes

          readable, writable, priority, closed = interest
          count += fail_closed(closed)

          timeout = 0 if ran || count.positive?
          timeout = process_poll_timeout(timeout)
          readable << @interrupt.to_io

          ready = wait_for_events(readable, writable, priority, timeout)
          if ready
            @interrupt.clear if ready[0].delete(@interrupt.to_io)
            count += dispatch(ready)
          end
          count + poll_processes
        end

        private

        def check_open!
          Kernel.raise IOError, "selector is closed" if closed?
        end

        def fiber!(fiber, method = :transfer)
          return if fiber.respond_to?(:alive?) && fiber.respond_to?(method)

          Kernel.raise TypeError, "expected a Fiber (or an object with #alive? and ##{method}), not #{fiber.class}"
        end

        def integer!(value, name)
          return if value.is_a?(Integer)

          Kernel.raise TypeError, "#{name} must be an Integer, not #{value.class}"
        end

        def validate_duration(duration)
          return nil if duration.nil?

          unless duration.is_a?(Numeric) && duration.real?
            Kernel.raise TypeError, "select duration must be nil or a number of seconds, not #{duration.class}"
          end

          if duration.is_a?(Float) && duration.nan?
            Kernel.raise ArgumentError, "select duration is NaN"
          end
          return 0 if duration.negative?
          # Longer than any timeout IO.select takes (1e30, 2**64...): forever.
          return nil if duration > LONGEST_WAIT

          duration
        end

        def enqueue_current
          entry = Ready.new(Fiber.current)
          @ready.push(entry)
          entry
        end

        def dequeue(entry)
          entry.cancel
          index = @ready.index { |queued| queued.equal?(entry) }
          @ready.delete_at(index) if index
        end

        # Runs each fiber queued before this call once. Returns whether the
        # queue was non-empty.
        def run_ready
          return false if @ready.empty?

          batch = @ready
          @ready = []
          index = 0
          begin
            while index < batch.size
              fiber = batch[index]
              index += 1
              fiber.transfer if fiber.alive?
            end
          ensure
            # Only reached early if a fiber switch raised: keep the rest queued.
            @ready.unshift(*batch[index..]) if index < batch.size
          end
          true
        end

        # Resumes each fiber whose child changed state. Returns how many.
        def poll_processes
          return 0 if @processes.empty?

          count = 0
          @processes.dup.each do |waiter|
            next unless waiter.waiting? && waiter.poll

            count += 1 if waiter.wake
          end
          count
        end

        # While children are awaited, a blocking wait is cut short so they are
        # polled again; the cut grows while nothing happens.
        def process_poll_timeout(timeout)
          return timeout if @processes.empty?

          poll = @process_poll
          @process_poll = [poll * 2, PROCESS_POLL_MAXIMUM].min
          timeout.nil? || timeout > poll ? poll : timeout
        end

        # The IO.select sets for every live waiter, plus the waiters whose IO
        # was closed while they waited.
        def interest
          readable = []
          writable = []
          priority = []
          closed = []

          @waiting.delete_if do |io, waiters|
            waiters.select!(&:waiting?)
            next true if waiters.empty?

            if io.closed?
              closed.concat(waiters)
              next true
            end

            events = 0
            waiters.each { |waiter| events |= waiter.events } # (inject allocates)
            readable << io if events.anybits?(IO::READABLE)
            writable << io if events.anybits?(IO::WRITABLE)
            priority << io if events.anybits?(IO::PRIORITY)
            false
          end

          [readable, writable, priority, closed]
        end

        def fail_closed(waiters)
          waiters.count do |waiter|
            waiter.error = IOError.new("closed stream")
            waiter.wake
          end
        end

        # Resumes, in arrival order, each waiter whose IO reported an event it
        # asked for. Returns the number of IOs that had a waiter to resume.
        def dispatch(ready)
          readable, writable, priority = ready
          events = {}.compare_by_identity
          readable.each { |io| events[io] = events.fetch(io, 0) | IO::READABLE }
          writable.each { |io| events[io] = events.fetch(io, 0) | IO::WRITABLE }
          priority.each { |io| events[io] = events.fetch(io, 0) | IO::PRIORITY }

          count = 0
          events.each do |io, revents|
            break if @closed

            waiters = @waiting[io]
            next unless waiters

            handled = false
            # A snapshot: fibers resumed here may wait on the same IO again,
            # and those new waits need a fresh readiness check.
            waiters.dup.each do |waiter|
              matching = revents & waiter.events
              next if matching.zero?

              next unless waiter.waiting?

              waiter.result = matching
              handled = true if waiter.wake
            end
            count += 1 if handled
          end
          count
        end

        def forget(io, waiter)
          waiter.cancel
          waiters = @waiting[io] or return
          index = waiters.index { |queued| queued.equal?(waiter) }
          waiters.delete_at(index) if index
          @waiting.delete(io) if waiters.empty?
        end
      end
    end
  end
end
