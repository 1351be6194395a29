# frozen_string_literal: true

# process_wait(fiber, pid, flags) of every selector, called directly: exited and
# running children, exit statuses, signals, core dumps, any child, a process
# group, and an interrupted wait (PROTOCOL.md "process_wait"; STYLE.md 3.2, 3.8).

require_relative "../../../test_helper"
require_relative "../../../support/selector_variants"
require "tmpdir"

module ProcessWaitContract
  include SelectorVariants
  include SelectorDriver

  class Interrupted < StandardError; end

  def setup
    super
    require_selector_method(:process_wait)
    @children = []
  end

  # Any child a failed test left behind is killed and reaped, so that it cannot
  # answer a later wait for "any child".
  def teardown
    @children&.each do |pid|
      Process.kill(:KILL, pid)
      Process.wait(pid)
    rescue SystemCallError
      nil
    end
    super
  end

  def spawn(*arguments, **options)
    pid = Process.spawn(*arguments, **options)
    @children << pid
    pid
  end

  # A child that runs until the returned pipe end is closed, then exits with
  # `status`: "still running" and "has exited" are then up to the test, not to
  # the timing of a sleep (GC_STRESS=1 makes everything slow).
  def controlled_child(status, **options)
    input, release = IO.pipe
    pid = spawn("sh", "-c", "read line; exit #{status}", in: input, **options)
    input.close
    [pid, release]
  end

  # Reap children that have already exited and that no test waits for.
  def reap_exited_strays
    loop do
      break unless Process.wait(-1, Process::WNOHANG)
    end
  rescue Errno::ECHILD
    nil
  end

  def wait_in_fiber(pid, flags = 0)
    run_op(timeout: 10) { selector.process_wait(Fiber.current, pid, flags) }
  end

  # Parks a fiber in process_wait(pid, 0) and returns it with a log that gets
  # :returned or :interrupted.
  def interruptible_wait(pid)
    outcome = []
    waiter = start do
      selector.process_wait(Fiber.current, pid, 0)
      outcome << :returned
    rescue Interrupted
      outcome << :interrupted
    end
    assert waiter.alive?
    [waiter, outcome]
  end

  def process_state(pid)
    File.read("/proc/#{pid}/stat")[/\) (\S)/, 1]
  rescue Errno::ENOENT
    nil
  end

  def wait_until_zombie(pid)
    deadline = monotonic + 5
    until process_state(pid) == "Z"
      flunk "child #{pid} did not exit" if monotonic > deadline
      sleep 0.005
    end
  end

  # Open descriptors as number => target. Comparing two snapshots shows what
  # was opened in between (closing is fine: a finaliser may close an old IO).
  def descriptors
    # The directory handle used for the listing is gone by the time of the
    # readlink: entries without a target are dropped.
    Dir.children("/proc/self/fd").filter_map do |name|
      target = File.readlink("/proc/self/fd/#{name}")
      [name.to_i, target]
    rescue Errno::ENOENT
      nil
    end.to_h
  end

  def assert_no_new_descriptors(before, message)
    opened = descriptors.reject { |fd, target| before[fd] == target }
    assert_empty opened, message
  end

  def assert_reaped(pid)
    assert_raises(Errno::ECHILD, "child #{pid} was not reaped") { Process.wait(pid, Process::WNOHANG) }
  end

  # -- exited and running children ---------------------------------------------

  def test_wait_for_a_child_that_has_already_exited
    pid = spawn("true")
    wait_until_zombie(pid)

    status = wait_in_fiber(pid)

    assert_kind_of Process::Status, status
    assert_equal pid, status.pid
    assert status.success?
    assert_reaped(pid)
  end

  def test_wait_for_a_running_child
    pid, release = controlled_child(0)
    status = nil

    waiter = start { status = selector.process_wait(Fiber.current, pid, 0) }
    assert waiter.alive?, "process_wait returned while the child was running"
    settle(3)
    assert waiter.alive?, "process_wait returned while the child was running"

    release.close
    drive_fibers(waiter, timeout: 10)

    assert_equal pid, status.pid
    assert status.success?
    assert_reaped(pid)
  ensure
    release&.close unless release&.closed?
  end

  def test_wait_for_a_sleeping_child
    pid = spawn("sleep", "0.2")
    started = monotonic

    status = wait_in_fiber(pid)

    assert_operator monotonic - started, :>=, 0.15
    assert_equal pid, status.pid
    assert status.success?
    assert_reaped(pid)
  end

  def test_the_loop_keeps_running_while_a_child_runs
    pid, release = controlled_child(0)
    status = nil
    ticks = 0

    waiter = start { status = selector.process_wait(Fiber.current, pid, 0) }
    ticker = start do
      local, remote = UNIXSocket.pair
      10.times do
        remote.write(".")
        selector.io_wait(Fiber.current, local, IO::READABLE)
        local.read_nonblock(1)
        ticks += 1
      end
    ensure
      local&.close
      remote&.close
    end

    drive_fibers(ticker, timeout: 5)
    assert_equal 10, ticks
    assert waiter.alive?, "the child is still running"
    assert_nil status

    release.close
    drive_fibers(waiter, timeout: 10)
    assert status.success?
  ensure
    release&.close unless release&.closed?
  end

  def test_wait_for_two_children_in_sequence
    first = spawn("sh", "-c", "exit 1")
    second = spawn("sh", "-c", "sleep 0.05; exit 2")
    statuses = []

    waiter = start do
      statuses << selector.process_wait(Fiber.current, first, 0)
      statuses << selector.process_wait(Fiber.current, second, 0)
    end
    drive_fibers(waiter, timeout: 10)

    assert_equal [first, second], statuses.map(&:pid)
    assert_equal [1, 2], statuses.map(&:exitstatus)
  end

  def test_two_fibers_wait_for_two_children_at_once
    first = spawn("sh", "-c", "sleep 0.1; exit 3")
    second = spawn("sh", "-c", "exit 4")
    statuses = {}

    fibers = [first, second].map do |pid|
      start { statuses[pid] = selector.process_wait(Fiber.current, pid, 0) }
    end
    drive_fibers(*fibers, timeout: 10)

    assert_equal 3, statuses.fetch(first).exitstatus
    assert_equal 4, statuses.fetch(second).exitstatus
  end

  # -- how the child ended ------------------------------------------------------

  def test_non_zero_exit_status
    pid = spawn("sh", "-c", "exit 3")
    status = wait_in_fiber(pid)

    refute status.success?
    assert status.exited?
    assert_equal 3, status.exitstatus
  end

  def test_killed_by_a_signal
    pid = spawn("sleep", "10")
    status = nil
    waiter = start { status = selector.process_wait(Fiber.current, pid, 0) }
    settle(2)
    assert waiter.alive?

    Process.kill(:TERM, pid)
    drive_fibers(waiter, timeout: 10)

    assert status.signaled?
    refute status.exited?
    assert_equal Signal.list.fetch("TERM"), status.termsig
    assert_nil status.exitstatus
  ensure
    begin
      Process.kill(:KILL, pid) if pid && status.nil?
      Process.wait(pid) if pid && status.nil?
    rescue SystemCallError
      nil
    end
  end

  def test_core_dump
    pattern = File.read("/proc/sys/kernel/core_pattern").strip
    _, hard = Process.getrlimit(:CORE)
    limit = hard == Process::RLIM_INFINITY ? 64 * 1024 * 1024 : hard

    Dir.mktmpdir("io-event-core") do |directory|
      pid = spawn("sh", "-c", "kill -QUIT $$", chdir: directory, rlimit_core: [limit, hard])
      status = wait_in_fiber(pid)

      assert status.signaled?
      assert_equal Signal.list.fetch("QUIT"), status.termsig

      # A plain file name in core_pattern is written in the child's directory;
      # a pipe or an absolute path depends on the host, so either answer goes.
      if limit > 0 && !pattern.start_with?("|") && !pattern.include?("/")
        assert status.coredump?, "core_pattern is #{pattern.inspect}: the kernel dumped, so coredump? must be true"
      end
    end
  end

  # -- any child, a process group ----------------------------------------------

  def test_wait_for_any_child
    reap_exited_strays
    pid = spawn("sh", "-c", "sleep 0.05; exit 6")
    status = wait_in_fiber(-1)

    assert_equal pid, status.pid
    assert_equal 6, status.exitstatus
    assert_reaped(pid)
  end

  def test_wait_for_a_process_group
    reap_exited_strays
    pid = spawn("sh", "-c", "sleep 0.05; exit 9", pgroup: true)
    assert_equal pid, Process.getpgid(pid)

    status = wait_in_fiber(-pid)

    assert_equal pid, status.pid
    assert_equal 9, status.exitstatus
    assert_reaped(pid)
  end

  # -- interrupted ---------------------------------------------------------------

  def test_interrupted_wait_leaves_the_child_to_a_later_wait
    pid, release = controlled_child(7)
    before = descriptors
    waiter, outcome = interruptible_wait(pid)
    settle(2)

    waiter.raise(Interrupted)
    assert_equal [:interrupted], outcome
    settle(3)
    assert_no_new_descriptors(before, "a descriptor leaked after the interrupted process_wait")

    # The child is still ours to reap.
    release.close
    _, status = Process.wait2(pid)
    assert_equal pid, status.pid
    assert_equal 7, status.exitstatus

    settle(3)
    assert_no_new_descriptors(before, "a descriptor leaked once the child exited")
  ensure
    release&.close unless release&.closed?
  end

  # The child exits while the waiter is parked, and the waiter is interrupted
  # before the loop resumes it: the exit status must still be there for the
  # code that handles the interruption.
  def test_interrupted_wait_for_an_exited_child_does_not_consume_it
    pid, release = controlled_child(5)
    before = descriptors
    waiter, outcome = interruptible_wait(pid)

    # Without running select: let the child exit and wait until it is a
    # zombie, or already reaped by whatever the selector uses to watch it.
    release.close
    deadline = monotonic + 5
    until [nil, "Z"].include?(process_state(pid))
      flunk "child #{pid} did not exit" if monotonic > deadline
      sleep 0.005
    end
    sleep 0.05

    waiter.raise(Interrupted)
    assert_equal [:interrupted], outcome
    settle(3)

    status =
      begin
        Process.wait2(pid).last
      rescue Errno::ECHILD
        nil
      end
    refute_nil status, "the interrupted process_wait consumed the child's exit status (Process.wait2 got ECHILD)"
    assert_equal 5, status.exitstatus
    assert_no_new_descriptors(before, "a descriptor leaked after the interrupted process_wait")
  ensure
    release&.close unless release&.closed?
  end
end

SelectorVariants.define("ProcessWait", ProcessWaitContract, variants: SelectorVariants::PLAIN)
