# frozen_string_literal: true

# Ordinary blocking Ruby code run under IOEventTestScheduler, once per selector:
# sockets, pipes, sleep, Process.wait, Queue/Mutex/ConditionVariable and
# Timeout go through the Fiber::Scheduler hooks into the selector.
#
# Each test runs its scheduler on a separate thread (Fiber.set_scheduler is per
# thread), so the main thread never has a scheduler, and the thread is always
# ended and its scheduler closed.

require_relative "../../test_helper"
require_relative "../../support/selector_variants"
require_relative "../../support/scheduler"

module SchedulerContract
  include SelectorVariants

  # Seconds a scheduler thread may take (the per-test watchdog is 20 s).
  def thread_timeout
    GC.stress ? 18 : 10
  end

  # Upper bounds on elapsed time mean nothing when GC_STRESS=1 makes every
  # allocation collect: only then are they left out.
  def assert_within(elapsed, limit, message = nil)
    return if GC.stress

    assert_operator elapsed, :<, limit, message
  end

  # Run the block on a new thread whose fiber scheduler is an
  # IOEventTestScheduler over this variant's selector. The block runs on the
  # thread's root fiber; Fiber.schedule starts fibers. Returns the block's value
  # after every scheduled fiber has finished. Exceptions from scheduled fibers
  # (failed assertions included) are re-raised here.
  def with_scheduler(timeout: thread_timeout, &block)
    selector_class # skips when the class is missing
    variant = selector_variant
    scheduler = nil

    thread = Thread.new do
      Thread.current.report_on_exception = false
      scheduler = IOEventTestScheduler.new(SelectorVariants.build(variant, Fiber.current))
      Fiber.set_scheduler(scheduler)
      block.call(scheduler)
    ensure
      # Runs the loop until every scheduled fiber is done, then closes it.
      Fiber.set_scheduler(nil) if scheduler
    end

    unless thread.join(timeout)
      thread.kill
      thread.join(2)
      flunk "the scheduler thread did not finish within #{timeout}s"
    end

    error = scheduler&.errors&.first
    raise error if error

    assert scheduler.closed?, "Fiber.set_scheduler(nil) closes the scheduler"
    assert_equal 0, scheduler.fiber_count
    thread.value
  end

  # -- TCP ------------------------------------------------------------------------

  def test_http_style_request_and_response_over_tcp
    request_seen = response = nil

    with_scheduler do
      server = TCPServer.new("127.0.0.1", 0)
      port = server.local_address.ip_port

      Fiber.schedule do
        client = server.accept
        lines = []
        while (line = client.gets("\r\n")) && line != "\r\n"
          lines << line.chomp
        end
        request_seen = lines
        body = "hello from #{lines.first.split[1]}"
        client.write("HTTP/1.1 200 OK\r\nContent-Length: #{body.bytesize}\r\nConnection: close\r\n\r\n#{body}")
        client.close
      ensure
        server.close
      end

      Fiber.schedule do
        socket = TCPSocket.new("127.0.0.1", port)
        socket.write("GET /index HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        response = socket.read
        socket.close
      end
    end

    assert_equal ["GET /index HTTP/1.1", "Host: 127.0.0.1"], request_seen
    head, body = response.split("\r\n\r\n", 2)
    assert_match(%r{\AHTTP/1.1 200 OK\r\n}, head)
    assert_equal "hello from /index", body
  end

  def test_many_concurrent_tcp_connections
    count = GC.stress ? 10 : 50
    replies = []

    with_scheduler do
      server = TCPServer.new("127.0.0.1", 0)
      port = server.local_address.ip_port

      Fiber.schedule do
        count.times do
          client = server.accept
          Fiber.schedule do
            line = client.gets
            client.write("echo #{line}")
            client.close
          end
        end
      ensure
        server.close
      end

      count.times do |index|
        Fiber.schedule do
          socket = TCPSocket.new("127.0.0.1", port)
          socket.write("#{index}\n")
          replies << socket.read
          socket.close
        end
      end
    end

    assert_equal count.times.map { |index| "echo #{index}\n" }.sort, replies.sort
  end

  # -- pipes ----------------------------------------------------------------------

  def test_pipe_reads_and_writes_of_one_byte
    received = nil

    with_scheduler do
      input, output = IO.pipe
      Fiber.schedule do
        received = input.read(1)
      ensure
        input.close
      end
      Fiber.schedule do
        sleep 0.01
        output.write("!")
      ensure
        output.close
      end
    end

    assert_equal "!", received
  end

  def test_pipe_reads_and_writes_of_64_kib
    size = 64 * 1024
    data = Random.new(42).bytes(size)
    received = written = nil

    with_scheduler do
      input, output = IO.pipe
      Fiber.schedule do
        received = input.read(size)
      ensure
        input.close
      end
      Fiber.schedule do
        written = output.write(data)
      ensure
        output.close
      end
    end

    assert_equal size, written
    assert_equal size, received.bytesize
    assert received == data, "64 KiB arrived intact"
  end

  def test_a_pipe_larger_than_its_capacity
    size = (GC.stress ? 256 : 1024) * 1024
    data = "0123456789abcdef" * (size / 16)
    received = nil

    with_scheduler do
      input, output = IO.pipe
      Fiber.schedule do
        received = input.read
      ensure
        input.close
      end
      Fiber.schedule do
        output.write(data)
      ensure
        output.close
      end
    end

    assert_equal size, received.bytesize
    assert received == data
  end

  def test_wait_readable_with_a_timeout
    result = nil
    elapsed = nil

    with_scheduler do
      input, output = IO.pipe
      Fiber.schedule do
        started = monotonic
        result = input.wait_readable(0.05)
        elapsed = monotonic - started
      ensure
        input.close
        output.close
      end
    end

    assert_nil result, "no data: wait_readable times out"
    assert_operator elapsed, :>=, 0.04
    assert_within elapsed, 1.0
  end

  # -- sleep ----------------------------------------------------------------------

  def test_concurrent_sleeps_overlap
    slept = []
    started = nil
    finished = []

    with_scheduler do
      started = monotonic
      3.times do
        Fiber.schedule do
          before = monotonic
          sleep 0.05
          finished << monotonic
          slept << finished.last - before
        end
      end
    end

    assert_equal 3, slept.size
    slept.each { |duration| assert_operator duration, :>=, 0.045 }
    # One after the other they would take 0.15 s.
    assert_within finished.max - started, 0.12, "the sleeps did not overlap"
  end

  def test_sleeps_wake_in_deadline_order
    deadlines = []
    woken = []

    with_scheduler do
      [0.06, 0.02, 0.04].each do |duration|
        Fiber.schedule do
          deadline = monotonic + duration
          deadlines << deadline
          sleep duration
          woken << deadline
        end
      end
    end

    assert_equal 3, woken.size
    assert_equal deadlines.sort, woken
  end

  def test_sleep_zero_yields_to_other_fibers
    order = []

    with_scheduler do
      Fiber.schedule do
        order << :a1
        sleep 0
        order << :a2
      end
      Fiber.schedule do
        order << :b1
      end
    end

    assert_equal %i[a1 b1 a2], order
  end

  # -- processes --------------------------------------------------------------------

  def test_process_wait_of_a_spawned_child
    status = nil
    ticks = 0

    with_scheduler do
      Fiber.schedule do
        pid = Process.spawn("sh", "-c", "sleep 0.1; exit 4")
        _, status = Process.wait2(pid)
      end
      Fiber.schedule do
        5.times do
          sleep 0.01
          ticks += 1
        end
      end
    end

    assert_equal 4, status.exitstatus
    assert_equal 5, ticks
  end

  # -- thread primitives --------------------------------------------------------------

  def test_queue_between_fibers
    received = []

    with_scheduler do
      queue = Thread::Queue.new
      Fiber.schedule do
        3.times { received << queue.pop }
      end
      Fiber.schedule do
        queue << 1
        sleep 0.01
        queue << 2
        queue << 3
      end
    end

    assert_equal [1, 2, 3], received
  end

  def test_queue_pushed_from_another_thread
    received = nil
    pusher = nil

    with_scheduler do
      queue = Thread::Queue.new
      Fiber.schedule { received = queue.pop }
      Fiber.schedule do
        sleep 0.01
        # Runs for a while outside any scheduler; unblock comes from that thread
        # while this one is blocked in select.
        pusher = Thread.new do
          sleep 0.05
          queue << :from_thread
        end
      end
    end

    pusher&.join
    assert_equal :from_thread, received
  end

  def test_mutex_between_fibers
    events = []

    with_scheduler do
      mutex = Thread::Mutex.new
      Fiber.schedule do
        mutex.synchronize do
          events << :a_locked
          sleep 0.02
          events << :a_unlocking
        end
      end
      Fiber.schedule do
        events << :b_waiting
        mutex.synchronize { events << :b_locked }
      end
    end

    assert_equal %i[a_locked b_waiting a_unlocking b_locked], events
  end

  def test_condition_variable_between_fibers
    events = []

    with_scheduler do
      mutex = Thread::Mutex.new
      condition = Thread::ConditionVariable.new
      ready = false

      Fiber.schedule do
        mutex.synchronize do
          events << :waiting
          condition.wait(mutex) until ready
          events << :signalled
        end
      end
      Fiber.schedule do
        sleep 0.01
        mutex.synchronize do
          ready = true
          events << :signal
          condition.signal
        end
      end
    end

    assert_equal %i[waiting signal signalled], events
  end

  def test_condition_variable_wait_with_a_timeout
    result = elapsed = nil

    with_scheduler do
      mutex = Thread::Mutex.new
      condition = Thread::ConditionVariable.new
      Fiber.schedule do
        started = monotonic
        mutex.synchronize { result = condition.wait(mutex, 0.05) }
        elapsed = monotonic - started
      end
    end

    refute_nil result
    assert_operator elapsed, :>=, 0.04
    assert_within elapsed, 1.0
  end

  # -- Timeout -----------------------------------------------------------------------

  def test_timeout_around_a_blocked_read
    error = elapsed = nil
    still_open = nil

    with_scheduler do
      input, output = IO.pipe
      Fiber.schedule do
        started = monotonic
        begin
          Timeout.timeout(0.1) { input.read(1) }
        rescue Timeout::Error => timeout_error
          error = timeout_error
        end
        elapsed = monotonic - started

        # The interrupted read left nothing behind: the next read works.
        output.write("z")
        still_open = input.read(1)
      ensure
        input.close
        output.close
      end
    end

    assert_kind_of Timeout::Error, error
    assert_operator elapsed, :>=, 0.09
    assert_within elapsed, 1.0
    assert_equal "z", still_open
  end

  def test_timeout_not_reached
    result = nil

    with_scheduler do
      Fiber.schedule do
        result = Timeout.timeout(1) do
          sleep 0.01
          :done
        end
      end
    end

    assert_equal :done, result
  end

  # -- the scheduler itself ------------------------------------------------------------

  def test_errors_in_fibers_are_collected
    selector_class
    scheduler = nil
    thread = Thread.new do
      scheduler = IOEventTestScheduler.new(SelectorVariants.build(selector_variant, Fiber.current))
      Fiber.set_scheduler(scheduler)
      Fiber.schedule { raise ArgumentError, "from a fiber" }
      Fiber.schedule { sleep 0.01 }
    ensure
      Fiber.set_scheduler(nil)
    end
    flunk "scheduler thread hung" unless thread.join(thread_timeout)

    assert_equal 1, scheduler.errors.size
    assert_kind_of ArgumentError, scheduler.errors.first
    assert scheduler.closed?
  end

  def test_the_main_thread_is_unaffected
    with_scheduler { Fiber.schedule { sleep 0.001 } }
    assert_nil Fiber.scheduler
  end
end

SelectorVariants.define("Scheduler", SchedulerContract, variants: SelectorVariants::PLAIN)
