# frozen_string_literal: true

class IO
  module Event
    module Selector
      class Select
        # How #select waits: IO.select over the waiters' IOs and the self-pipe,
        # blocking only when nothing else is to be done, ended by #wakeup, a
        # signal, or an exception sent to the thread (even a deferred one).
        # Uses the selector's @blocked, @ready, @interrupt and @idle_duration.
        module Wait
          # Waits this short (seconds) skip the helper thread that lets a signal
          # end a wait on the main thread. The trap handler still runs at once
          # (inside IO.select); only the return from #select can be this late,
          # which is not worth a thread per wait.
          SHORT_WAIT = 0.1
          private_constant :SHORT_WAIT

          private

          # IO.select over the sets, blocking up to +timeout+ seconds (nil:
          # forever) unless an interrupt is already pending for this thread.
          # Returns IO.select's answer, or nil (nothing ready, or interrupted).
          def wait_for_events(readable, writable, priority, timeout)
            # A pending interrupt that Thread.handle_interrupt defers would not
            # end the wait (Ruby resumes a blocking call after each interrupt it
            # cannot deliver), so with one pending select only polls.
            timeout = 0 if Thread.pending_interrupt?
            if timeout&.zero?
              @idle_duration = 0.0
              return select_ios(readable, writable, priority, 0)
            end

            @blocked = true
            # Anything queued (by another thread) before @blocked was set is seen
            # here; anything after it comes with a #wakeup that fills the pipe.
            timeout = 0 unless @ready.empty?
            started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
            begin
              interruptible_wait(readable, writable, priority, timeout)
            ensure
              @blocked = false
              @idle_duration = timeout&.zero? ? 0.0 : Process.clock_gettime(Process::CLOCK_MONOTONIC) - started
            end
          end

          # The blocking wait, which an exception sent to this thread (by
          # Thread#raise or a signal) ends even when the caller has deferred it
          # with Thread.handle_interrupt: the exception is let in here, caught,
          # and sent to the thread again, where the caller's mask holds it until
          # the mask ends (or, with no mask, it is raised at once). The wait then
          # counts as having seen nothing.
          def interruptible_wait(readable, writable, priority, timeout)
            interruption = nil
            ready = ::Thread.handle_interrupt(::Exception => :on_blocking) do
              if (timeout.nil? || timeout > SHORT_WAIT) && ::Thread.current.equal?(::Thread.main)
                select_on_main_thread(readable, writable, priority, timeout)
              else
                select_ios(readable, writable, priority, timeout)
              end
            rescue ::Exception => error # rubocop:disable Lint/RescueException
              interruption = error
              nil
            end
            ::Thread.current.raise(interruption) if interruption
            ready
          end

          # IO.select, except that an IO closed meanwhile (by another thread,
          # or a trap handler: IOError, or EBADF when the kernel saw it first)
          # counts as no event: the next #select hands its waiters an IOError.
          def select_ios(readable, writable, priority, timeout)
            ::IO.select(readable, writable, priority, timeout)
          rescue IOError, Errno::EBADF
            closed = [readable, writable, priority].any? do |set|
              set.any? { |io| io.to_io.closed? }
            end
            Kernel.raise unless closed

            nil
          end

          # Trap handlers run on the main thread, and IO.select resumes waiting
          # after one has run, so a signal would not end the wait. A condition
          # variable wait does return after a trap handler, so the main thread
          # waits on one while a helper thread does the IO.select; if the main
          # thread wakes first (signal, timeout, Thread#raise), the self-pipe ends
          # the helper's IO.select and its result is used as usual.
          def select_on_main_thread(readable, writable, priority, timeout)
            mutex = Thread::Mutex.new
            condition = Thread::ConditionVariable.new
            done = false

            helper = Thread.new do
              Thread.current.report_on_exception = false
              select_ios(readable, writable, priority, timeout)
            ensure
              mutex.synchronize do
                done = true
                condition.signal
              end
            end

            finished = mutex.synchronize do
              condition.wait(mutex, timeout) unless done
              done
            end
            @interrupt.signal unless finished
            helper.value
          ensure
            # Not interruptible: a second exception arriving here would replace
            # the one being raised. The pipe makes the join short.
            ::Thread.handle_interrupt(::Object => :never) do
              if helper&.alive?
                @interrupt.signal
                helper.join rescue nil # rubocop:disable Style/RescueModifier
              end
            end
          end
        end
        private_constant :Wait
      end
    end
  end
end
