# frozen_string_literal: true

# Drives a selector by hand, the way a scheduler does: the test method runs on
# the loop fiber, `start` runs a block in a new fiber at once (until it parks),
# `drive` calls select until a condition holds. Exceptions raised in started
# fibers (failed assertions included) are re-raised on the loop fiber. Pipes
# and sockets made with `pipe`/`socket_pair` and files made with
# `tempfile_with` are closed by teardown.
module SelectorDriver
  def setup
    super
    @loop = Fiber.current
    @fiber_errors = []
    @tracked_ios = []
    @tracked_files = []
    @selector = new_selector(@loop)
  end

  def teardown
    @selector.close if @selector && !@selector.closed?
  ensure
    @tracked_ios&.each { |io| io.close unless io.closed? }
    @tracked_files&.each(&:close!)
    super
  end

  attr_reader :selector

  def pipe
    ios = IO.pipe
    @tracked_ios.concat(ios)
    ios
  end

  def socket_pair
    ios = UNIXSocket.pair
    @tracked_ios.concat(ios)
    ios
  end

  def start(&block)
    fiber = Fiber.new do
      block.call
    rescue Exception => error # rubocop:disable Lint/RescueException
      @fiber_errors << error
    end
    fiber.transfer
    fiber
  end

  def raise_fiber_errors
    error = @fiber_errors.shift
    raise error if error
  end

  # Call select until the block returns true, at most `timeout` seconds.
  def drive(timeout: 5, quantum: 0.05)
    deadline = monotonic + timeout
    until yield
      raise_fiber_errors
      flunk "condition not reached after #{timeout}s of select" if monotonic > deadline
      @selector.select(quantum)
    end
    raise_fiber_errors
  end

  # Call select until every fiber has finished.
  def drive_fibers(*fibers, timeout: 5)
    drive(timeout: timeout) { fibers.none?(&:alive?) }
  end

  # Runs the block in a fiber (transfers must not run on the loop fiber),
  # drives the selector until it finishes, and returns the block's value.
  def run_op(timeout: 2)
    result = nil
    fiber = start { result = yield }
    drive_fibers(fiber, timeout: timeout)
    result
  end

  def buffer_with(string)
    buffer = IO::Buffer.new(string.bytesize)
    buffer.set_string(string)
    buffer
  end

  def zeroed?(buffer)
    buffer.get_string.each_byte.all?(&:zero?)
  end

  # A binary temporary file holding `content`, positioned at its start;
  # deleted by teardown.
  def tempfile_with(content)
    require "tempfile"
    file = Tempfile.new("io-event-test")
    @tracked_files << file
    file.binmode
    file.write(content)
    file.flush
    file.rewind
    file
  end

  # `normal` repetitions, or `stressed` when GC.stress is on (GC_STRESS=1
  # makes every allocation collect; large loops would only hit the watchdog).
  def scaled(normal, stressed)
    GC.stress ? stressed : normal
  end

  # A few short rounds of select, for "nothing else happens" assertions.
  def settle(rounds = 3, duration = 0.01)
    rounds.times { @selector.select(duration) }
    raise_fiber_errors
  end
end
