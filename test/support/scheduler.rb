# frozen_string_literal: true

# A small but complete Fiber::Scheduler on top of IO::Event::Selector.
#
# The test suite uses it to run ordinary blocking Ruby code (sockets, pipes,
# sleep, Process.wait, Queue, Mutex, Timeout) through each selector, and the HTTP
# benchmark (benchmark/server/scheduler.rb) uses it as its event loop, so the
# hot paths (io_wait, io_read, io_write) allocate nothing of their own.
#
# Usage, on a thread's root fiber:
#
#   scheduler = IOEventTestScheduler.new                # IO::Event::Selector.new picks the class
#   scheduler = IOEventTestScheduler.new(IO::Event::Selector::EPoll)
#   Fiber.set_scheduler(scheduler)
#   Fiber.schedule { ... }
#   Fiber.set_scheduler(nil)                             # runs the loop until every fiber is done
#
# The loop fiber is the fiber that called `new`. It must be the thread's root
# fiber: a fiber started by `transfer` returns there when its block ends.
#
# Hooks and the Ruby versions that call them:
#   3.1: io_wait, io_read(io, buffer, length), io_write(...), kernel_sleep,
#        block, unblock, process_wait, timeout_after, fiber, close
#   3.2: io_read/io_write gain a 4th argument, the offset into the buffer
#   3.3: io_pread(io, buffer, from, length, offset), io_pwrite(...)
# address_resolve and io_select are not implemented: Ruby then does the blocking
# call itself.

require "io/event"
require "timeout"

class IOEventTestScheduler
  # Hooks that forward the buffered operations to the selector. They are added to
  # an instance (with `extend`) only when its selector implements them, because
  # Ruby decides whether to call a hook by checking that the method exists.
  module BufferedIO
    def io_read(io, buffer, length, offset = 0)
      @selector.io_read(Fiber.current, io, buffer, length, offset)
    end

    def io_write(io, buffer, length, offset = 0)
      @selector.io_write(Fiber.current, io, buffer, length, offset)
    end
  end

  module PositionalIO
    def io_pread(io, buffer, from, length, offset)
      @selector.io_pread(Fiber.current, io, buffer, from, length, offset)
    end

    def io_pwrite(io, buffer, from, length, offset)
      @selector.io_pwrite(Fiber.current, io, buffer, from, length, offset)
    end
  end

  # `selector` is nil (IO::Event::Selector.new chooses, honouring
  # IO_EVENT_SELECTOR), a selector class, or a selector instance whose loop is
  # the current fiber.
  #
  # `on_error` is called with any exception that ends a scheduled fiber. By
  # default the exception is kept in #errors (tests assert it is empty); a
  # long-running server should pass a handler that logs and forgets.
  def initialize(selector = nil, on_error: nil)
    @loop = Fiber.current
    @thread = Thread.current

    @selector =
      case selector
      when nil then IO::Event::Selector.new(@loop)
      when Class then selector.new(@loop)
      else selector
      end

    @timers = IO::Event::Timers.new

    # Scheduled fibers that have not finished yet.
    @count = 0

    # Fibers parked in #block or #kernel_sleep, so that a late unblock or
    # timeout cannot resume a fiber that has already moved on.
    @blocked = {}.compare_by_identity

    # Fibers unblocked from other threads, handed to the loop thread.
    @unblocked = []
    @unblocked_mutex = Thread::Mutex.new
    @selecting = false

    @errors = []
    @on_error = on_error || @errors.method(:push)
    @closed = false

    extend(BufferedIO) if @selector.respond_to?(:io_read) && @selector.respond_to?(:io_write)
    extend(PositionalIO) if @selector.respond_to?(:io_pread) && @selector.respond_to?(:io_pwrite)
  end

  attr_reader :selector, :loop, :errors

  # Number of scheduled fibers that have not finished.
  def fiber_count
    @count
  end

  def closed?
    @closed
  end

  # -- Fiber creation ------------------------------------------------------

  # Fiber.schedule(*arguments) { |*arguments| }: start the block in a new
  # non-blocking fiber at once. The caller is put on the ready queue and
  # continues at the next select.
  def fiber(*arguments, &block)
    raise ArgumentError, "no block given" unless block
    raise IOError, "scheduler is closed" if @closed

    fiber = Fiber.new(blocking: false) do
      block.call(*arguments)
    rescue Exception => error # rubocop:disable Lint/RescueException
      @on_error.call(error)
    ensure
      @count -= 1
    end
    @count += 1

    @selector.resume(fiber)
    fiber
  end

  # -- Event loop -----------------------------------------------------------

  # Run the loop until no scheduled fiber is left.
  def run
    run_once while @count > 0
  end

  # One iteration: run ready fibers and completed events, block at most until
  # the next timer (or `timeout` seconds, nil = no limit, when no timer is
  # pending), then fire due timers. Returns what select returned.
  def run_once(timeout = nil)
    interval = @timers.wait_interval
    if interval.nil?
      interval = timeout
    elsif interval < 0
      interval = 0
    end

    begin
      # See #unblock: another thread may hand us a fiber between the check of
      # @unblocked and the moment select blocks; it keeps calling wakeup while
      # @selecting is set until one lands.
      @selecting = true
      interval = 0 unless @unblocked.empty?
      result = @selector.select(interval)
    ensure
      @selecting = false
    end

    resume_unblocked unless @unblocked.empty?
    @timers.fire

    result
  end

  # Close the scheduler: finish every scheduled fiber, then release the
  # selector. Ruby calls this from Fiber.set_scheduler(nil) and at thread exit.
  def close
    return if @closed

    begin
      # A thread that is being killed must not sit in the loop again.
      run unless Thread.current.status == "aborting"
    ensure
      @closed = true
      @selector.close
    end
  end

  # Ruby 3.1 calls `scheduler_close` first when it exists; keep one code path.
  alias scheduler_close close

  # -- Hooks ----------------------------------------------------------------

  def io_wait(io, events, timeout = nil)
    fiber = Fiber.current

    if timeout
      # Resuming the fiber without an event makes the selector's io_wait
      # return false, which Ruby reads as "timed out".
      timer = @timers.after(timeout) { fiber.transfer if fiber.alive? }
    end

    @selector.io_wait(fiber, io, events)
  ensure
    timer&.cancel!
  end

  # Also the wait of ConditionVariable#wait and Mutex#sleep, which Ruby ends
  # early with #unblock: a sleeping fiber is registered like a blocked one.
  def kernel_sleep(duration = nil)
    if duration && duration <= 0
      @selector.yield
      return true
    end

    fiber = Fiber.current
    @blocked[fiber] = true
    if duration
      timer = @timers.after(duration) do
        fiber.transfer if @blocked.delete(fiber)
      end
    end

    @selector.transfer
    true
  ensure
    timer&.cancel!
    @blocked.delete(fiber) if fiber
  end

  # Park the current fiber on `blocker` (a Mutex, Queue, ConditionVariable...).
  # Returns true when unblocked, false when `timeout` expired first.
  def block(blocker, timeout = nil)
    fiber = Fiber.current
    @blocked[fiber] = true

    if timeout
      timer = @timers.after(timeout) do
        fiber.transfer(false) if @blocked.delete(fiber)
      end
    end

    @selector.transfer != false
  ensure
    timer&.cancel!
    @blocked.delete(fiber)
  end

  # May be called from any thread. The fiber is resumed by the loop, after its
  # next select, and only if it is still parked in #block or #kernel_sleep: an
  # unblock that arrives after a timeout or an exception has ended the wait
  # does nothing.
  def unblock(blocker, fiber)
    @unblocked_mutex.synchronize { @unblocked << fiber }

    unless Thread.current.equal?(@thread)
      # wakeup answers false when select is not blocked. If the loop is between
      # its check of @unblocked and the blocking call, keep trying until it is
      # blocked (then wakeup lands) or has left select (then it drains
      # @unblocked itself). The window is a few instructions wide.
      while @selecting
        break if @selector.wakeup

        Thread.pass
      end
    end

    true
  end

  def process_wait(pid, flags)
    @selector.process_wait(Fiber.current, pid, flags)
  end

  # Timeout.timeout under this scheduler: raise `exception` into the current
  # fiber if the block is still running after `duration` seconds.
  def timeout_after(duration, exception = Timeout::Error, message = "execution expired", &block)
    fiber = Fiber.current
    timer = @timers.after(duration) do
      fiber.raise(exception, message) if fiber.alive?
    end

    yield duration
  ensure
    timer&.cancel!
  end

  private

  def resume_unblocked
    fibers = @unblocked_mutex.synchronize do
      unblocked = @unblocked
      @unblocked = []
      unblocked
    end

    fibers.each do |fiber|
      fiber.transfer if @blocked.delete(fiber)
    end
  end
end
