# frozen_string_literal: true

# Attempts that may not wait: every `length == 0` call (one attempt, -EAGAIN
# when nothing is there) and the first try of every write. 9da6e66 made
# URing's as direct preadv2/pwritev2 system calls with RWF_NOWAIT, and both
# backends used RWF_NOWAIT on pipes instead of setting O_NONBLOCK with fcntl
# around a read/write. A review found that this
#
# - answered -ESPIPE on URing for a position on a pipe, where the ring's op
#   (a read of length > 0) ignores it, so two calls differing only in length
#   disagreed (SoundnessNowaitPositionOnStream);
# - failed every read and write on a pipe (-EPERM) where a seccomp profile
#   refuses preadv2/pwritev2, and parked a length == 0 URing read on an empty
#   pipe where the kernel refuses RWF_NOWAIT on pipes (before Linux 6.4)
#   (SoundnessNowaitRefusedSyscalls, under test/support/refuse_syscalls.c);
# - parked a length == 0 URing read on an empty named FIFO or pty, which
#   refuse RWF_NOWAIT (SoundnessNowaitRefusingFiles);
# - blocked the thread, GVL held, on a regular file of a frozen filesystem
#   (pwritev2 waits in file_start_write; preadv2 at the current position
#   waits for the file-position lock that another thread's write holds),
#   where the ring's RWF_NOWAIT op answers at once
#   (SoundnessNowaitFrozenFilesystem: root, and a loop-mounted ext4 that the
#   test sets up and tears down itself).
#
# To run this file against another build, load that build's io/event first
# (test_helper.rb puts this checkout's lib/ first on the load path):
#
#   ruby -I/path/to/other/lib -rio/event -Itest test/soundness/nowait_attempt_test.rb
#
# Child scripts use the lib/ of the build the test process loaded.

require_relative "support"
require_relative "../support/nowait_calls"
require "fcntl"
require "fileutils"
require "io/console"
require "io/nonblock"
require "open3"
require "pty"
require "tmpdir"

module SoundnessNowaitAttempt
  include Soundness::Helpers
  include NowaitCalls

  CALLS = File.expand_path("../support/nowait_calls.rb", __dir__)

  EAGAIN = -Errno::EAGAIN::Errno
  ESPIPE = -Errno::ESPIPE::Errno

  # The lib/ directory of the native library this process loaded (so that a
  # child script runs the same build), or this checkout's.
  LIB =
    $LOADED_FEATURES.filter_map { |path| path[%r{\A(.*)/io_event_uring/[^/]+/io_event_uring\.so\z}, 1] }.first ||
    Soundness::LIB

end

# (1) io_pread/io_pwrite on a pipe or socket. The ring's read/write op ignores
# the position on a pipe (a read of length > 0 parks on one), so URing's
# attempts that may not wait ignore it too: every call moves the data,
# whatever its length. EPoll and Select make pread(2)/pwrite(2)'s answer,
# -ESPIPE, for every length, and move nothing.
module SoundnessNowaitPositionOnStream
  include SoundnessNowaitAttempt

  def test_positional_calls_on_a_pipe_agree_whatever_their_length
    assert_equal expected_positional_answers, positional_answers_in_child("a pipe") { IO.pipe }
  end

  # At position 0 only: the ring's op on a socket answers -ESPIPE for any
  # other (sock_read_iter/sock_write_iter), and so does URing's read of
  # length > 0 there.
  def test_positional_calls_on_a_socket_at_position_zero_agree_whatever_their_length
    answers = positional_answers_in_child("a socket", positions: [0, 0, 0, 0, 0]) { UNIXSocket.pair }
    assert_equal expected_positional_answers, answers
  end

  # Past position 0 the ring's op on a socket answers -ESPIPE, and so do
  # URing's attempts, whatever the length; so do EPoll's and Select's.
  def test_positional_calls_on_a_socket_past_position_zero_answer_espipe_whatever_their_length
    answers = positional_answers_in_child("a socket past 0", positions: [7, 7, 7, 7, 7]) { UNIXSocket.pair }
    assert_equal({pwrite: ESPIPE, pwrite_moved: :wait_readable, pwrite_zero: ESPIPE, pwrite_zero_moved: :wait_readable,
                  pread_zero_empty: ESPIPE, pread_zero: ESPIPE, pread_one: ESPIPE, read: "\0" * 5, left: "abcde"},
                 answers)
  end

  # Bytes that are not steady (a buffer locked by its owner) take the
  # system-call route on URing too, whatever the length.
  def test_positional_calls_with_a_locked_buffer_on_a_pipe
    require_selector_method(:io_pread, :io_pwrite)
    answers = isolated(label: "io_pread/io_pwrite on a pipe, locked buffer") do
      selector = lending_selector
      input, output = IO.pipe
      answers = {}
      hello = buffer_of("hello")
      answers[:pwrite] = hello.locked { completed(selector) { selector.io_pwrite(Fiber.current, output, hello, 0, 5, 0) } }
      answers[:written] = input.read_nonblock(16, exception: false)
      output.write("abc")
      read = IO::Buffer.new(8)
      answers[:pread_zero] = read.locked { at_once(selector) { selector.io_pread(Fiber.current, input, read, 0, 0, 0) } }
      output.write("de")
      answers[:pread_one] = read.locked { completed(selector) { selector.io_pread(Fiber.current, input, read, 3, 1, 3) } }
      answers[:read] = read.get_string(0, 5)
      answers[:left] = input.read_nonblock(16, exception: false)
      answers
    end
    expected =
      if uring?
        {pwrite: 5, written: "hello", pread_zero: 3, pread_one: 2, read: "abcde", left: :wait_readable}
      else
        {pwrite: ESPIPE, written: :wait_readable, pread_zero: ESPIPE, pread_one: ESPIPE, read: "\0" * 5, left: "abcde"}
      end
    assert_equal expected, answers
  end

  private

  # Every call at a position (`from`: `positions`, one per call), on the
  # stream `input`/`output`.
  # `positional_answers` in a child process, on the pair of descriptors the
  # block makes.
  def positional_answers_in_child(label, **options)
    require_selector_method(:io_pread, :io_pwrite)
    isolated(label: "io_pread/io_pwrite on #{label}") do
      selector = lending_selector
      input, output = yield
      positional_answers(selector, input, output, **options)
    end
  end

  def positional_answers(selector, input, output, positions: [0, 9, 0, 3, 5])
    answers = {}
    at = positions.dup
    answers[:pwrite] = completed(selector) { selector.io_pwrite(Fiber.current, output, buffer_of("hello"), at.shift, 5, 0) }
    answers[:pwrite_moved] = input.read_nonblock(16, exception: false)
    answers[:pwrite_zero] = at_once(selector) { selector.io_pwrite(Fiber.current, output, buffer_of("world"), at.shift, 0, 0) }
    answers[:pwrite_zero_moved] = input.read_nonblock(16, exception: false)

    read = IO::Buffer.new(8)
    answers[:pread_zero_empty] = at_once(selector) { selector.io_pread(Fiber.current, input, read, at.shift, 0, 0) }
    output.write("abc")
    answers[:pread_zero] = at_once(selector) { selector.io_pread(Fiber.current, input, read, at.shift, 0, 0) }
    # A read of length > 0 on an empty stream waits for the data.
    answer, = start_call(selector) { selector.io_pread(Fiber.current, input, read, at.shift, 1, 3) }
    output.write("de")
    answers[:pread_one] = answer.call
    answers[:read] = read.get_string(0, 5)
    answers[:left] = input.read_nonblock(16, exception: false)
    answers
  end

  def expected_positional_answers
    if uring?
      {pwrite: 5, pwrite_moved: "hello", pwrite_zero: 5, pwrite_zero_moved: "world",
       pread_zero_empty: EAGAIN, pread_zero: 3, pread_one: 2, read: "abcde", left: :wait_readable}
    else
      {pwrite: ESPIPE, pwrite_moved: :wait_readable, pwrite_zero: ESPIPE, pwrite_zero_moved: :wait_readable,
       pread_zero_empty: ESPIPE, pread_zero: ESPIPE, pread_one: ESPIPE, read: "\0" * 5, left: "abcde"}
    end
  end
end

# (2, 3) Pipes where preadv2/pwritev2 are refused: by a seccomp profile that
# does not list them (EPERM), by a kernel before 4.6 (ENOSYS), or, for
# RWF_NOWAIT, by a kernel whose pipes do not take it (EOPNOTSUPP, before 6.4).
# Each runs in a fresh Ruby under test/support/refuse_syscalls.c. The pipe is
# put in blocking mode (Ruby makes pipes non-blocking), so that the fallback
# must set O_NONBLOCK for the call, and put it back.
module SoundnessNowaitRefusedSyscalls
  include SoundnessNowaitAttempt

  HELPER_SOURCE = File.expand_path("../support/refuse_syscalls.c", __dir__)

  # Written, read at once, read again on the empty pipe, and a read that
  # waits for a later write.
  PIPE_MOVES_DATA = <<~RUBY
    selector = IO::Event::Selector.const_get(ENV.fetch("NOWAIT_SELECTOR")).new(Fiber.current)
    input, output = IO.pipe
    input.nonblock = false
    output.nonblock = false
    answers = {}
    answers[:write] = completed(selector) { selector.io_write(Fiber.current, output, buffer_of("hello"), 5) }
    read = IO::Buffer.new(8)
    answers[:read] = at_once(selector) { selector.io_read(Fiber.current, input, read, 0) }
    answers[:read_bytes] = read.get_string(0, 5)
    answers[:read_empty] = at_once(selector) { selector.io_read(Fiber.current, input, read, 0) }
    answer, = start_call(selector) { selector.io_read(Fiber.current, input, read, 3) }
    writer, = start_call(selector) { selector.io_write(Fiber.current, output, buffer_of("abc"), 3) }
    answers[:waiting_read] = answer.call
    answers[:later_write] = writer.call
    answers[:waiting_read_bytes] = read.get_string(0, 3)
    answers[:nonblock] = [nonblock?(input), nonblock?(output)]
    report answers
  RUBY

  # A length == 0 read of the empty pipe answers at once, and one after a
  # write reads the data.
  PIPE_ZERO_LENGTH = <<~RUBY
    selector = IO::Event::Selector.const_get(ENV.fetch("NOWAIT_SELECTOR")).new(Fiber.current)
    input, output = IO.pipe
    input.nonblock = false
    output.nonblock = false
    answers = {}
    read = IO::Buffer.new(8)
    answers[:read_empty] = at_once(selector) { selector.io_read(Fiber.current, input, read, 0) }
    output.syswrite("late")
    answers[:read_late] = at_once(selector) { selector.io_read(Fiber.current, input, read, 0) }
    answers[:read_late_bytes] = read.get_string(0, 4)
    answers[:write] = completed(selector) { selector.io_write(Fiber.current, output, buffer_of("hello"), 5) }
    answers[:nonblock] = [nonblock?(input), nonblock?(output)]
    answers[:written] = IO.select([input], nil, nil, 0.5) ? input.readpartial(16) : :nothing
    report answers
  RUBY

  MOVED = {write: 5, read: 5, read_bytes: "hello", read_empty: EAGAIN, waiting_read: 3,
           later_write: 3, waiting_read_bytes: "abc", nonblock: [false, false]}.freeze

  def test_pipe_reads_and_writes_move_data_when_seccomp_refuses_preadv2_and_pwritev2
    assert_equal MOVED, refusing(Errno::EPERM, PIPE_MOVES_DATA, label: "EPERM for preadv2/pwritev2")
  end

  def test_pipe_reads_and_writes_move_data_when_the_kernel_lacks_preadv2_and_pwritev2
    assert_equal MOVED, refusing(Errno::ENOSYS, PIPE_MOVES_DATA, label: "ENOSYS for preadv2/pwritev2")
  end

  def test_zero_length_read_of_an_empty_pipe_that_refuses_rwf_nowait_answers_eagain
    answers = refusing(Errno::EOPNOTSUPP, PIPE_ZERO_LENGTH, label: "EOPNOTSUPP for preadv2/pwritev2")
    expected = {read_empty: EAGAIN, read_late: 4, read_late_bytes: "late", write: 5,
                nonblock: [false, false], written: "hello"}
    assert_equal expected, answers
  end

  private

  # Runs `code` in a fresh Ruby (this variant's selector class in
  # NOWAIT_SELECTOR, its environment, this build's lib/) with preadv2 and
  # pwritev2 failing with `errno`. Returns what the script reported.
  def refusing(errno, code, label:, timeout: 5)
    selector_class
    helper = SoundnessNowaitRefusedSyscalls.helper
    reader, writer = IO.pipe
    log = Tempfile.new("soundness-refused")
    env = selector_variant.env.merge("NOWAIT_SELECTOR" => selector_variant.class_name)
    script = script_prelude(writer.fileno) + code
    pid = Process.spawn(
      env, helper, errno::Errno.to_s, RbConfig.ruby, "-I", LIB, "-e", script,
      writer.fileno => writer.fileno, :err => log.path, :out => log.path, :pgroup => true
    )
    writer.close
    frames, status, stderr = wait_for_child(pid, reader, log, timeout, label)
    skip "#{label}: #{stderr.strip}" if status.exitstatus == 125 && stderr.include?("refuse_syscalls:")
    reported = frames.reverse.find { |frame| frame[0] == :report }
    unless reported && status.success?
      flunk "#{label}: the script did not report (#{describe_status(status)})\n#{stderr.lines.last(5).join}"
    end
    reported[1]
  ensure
    reader&.close unless reader&.closed?
    writer&.close unless writer&.closed?
    log&.close!
  end

  def script_prelude(channel)
    <<~RUBY
      Warning[:experimental] = false
      require "io/event"
      require "io/nonblock"
      require "fcntl"
      $channel = IO.for_fd(#{channel}, autoclose: false)
      def report(value)
        data = Marshal.dump([:report, value])
        $channel.write([data.bytesize].pack("N"), data)
      end
      require #{CALLS.inspect}
      include NowaitCalls
    RUBY
  end

  # test/support/refuse_syscalls.c, compiled once per process into a
  # temporary directory (removed after the run).
  def self.helper
    @helper ||= compile_helper
  end

  def self.compile_helper
    compiler = ENV.fetch("CC", "cc")
    unless ENV.fetch("PATH", "").split(File::PATH_SEPARATOR).any? { |dir| File.executable?(File.join(dir, compiler)) }
      raise Minitest::Skip, "no C compiler (#{compiler}) to build test/support/refuse_syscalls.c"
    end

    @helper_dir ||= Dir.mktmpdir("io-event-refuse-syscalls").tap do |dir|
      Minitest.after_run { FileUtils.rm_rf(dir) }
    end
    path = File.join(@helper_dir, "refuse_syscalls")
    output, status = Open3.capture2e(compiler, "-O2", "-o", path, HELPER_SOURCE)
    raise Minitest::Assertion, "#{compiler} could not build #{HELPER_SOURCE}:\n#{output}" unless status.success?

    path
  end
end

# (4) A length == 0 read of an empty named FIFO or pty: both refuse
# RWF_NOWAIT (EOPNOTSUPP), so the native selectors fall back to a read with
# O_NONBLOCK set for the call: one attempt, -EAGAIN, and the descriptor's
# flag as it was. Data written later is read by the next such call.
module SoundnessNowaitRefusingFiles
  include SoundnessNowaitAttempt

  def test_zero_length_read_of_an_empty_named_fifo_answers_eagain
    require_selector_method(:io_read)
    isolated(label: "named FIFO") do
      Dir.mktmpdir("soundness-fifo") do |dir|
        path = File.join(dir, "fifo")
        File.mkfifo(path)
        # Read-write: the open does not wait for a writer, and the FIFO never
        # reports end of file.
        fifo = File.open(path, File::RDWR | File::BINARY)
        [false, true].each do |nonblocking|
          fifo.nonblock = nonblocking
          assert_zero_length_reads(fifo, "named FIFO", nonblocking) { "fifo!".tap { |data| fifo.syswrite(data) } }
        end
        fifo.close
      end
      true
    end
  end

  def test_zero_length_read_of_an_empty_pty_answers_eagain
    require_selector_method(:io_read)
    isolated(label: "pty") do
      master, slave = PTY.open
      slave.raw!
      [false, true].each do |nonblocking|
        slave.nonblock = nonblocking
        assert_zero_length_reads(slave, "pty slave", nonblocking) { "pty!!".tap { |data| master.write(data) } }
      end
      [master, slave].each(&:close)
      true
    end
  end

  private

  def assert_zero_length_reads(io, name, nonblocking)
    selector = new_selector
    label = "#{name}, O_NONBLOCK #{nonblocking ? "set" : "clear"}"
    buffer = IO::Buffer.new(16)
    step "#{label}: length 0 read of the empty file"
    empty = at_once(selector) { selector.io_read(Fiber.current, io, buffer, 0) }
    assert_equal EAGAIN, empty, "#{label}: a length 0 io_read of the empty file (:parked: it waited for data)"
    assert_equal nonblocking, nonblock?(io), "#{label}: the call changed O_NONBLOCK"

    written = yield
    assert IO.select([io], nil, nil, 2), "#{label}: the data written never arrived"
    step "#{label}: length 0 read of the data"
    read = at_once(selector) { selector.io_read(Fiber.current, io, buffer, 0) }
    assert_equal [written.bytesize, written], [read, buffer.get_string(0, written.bytesize)],
                 "#{label}: a length 0 io_read after data came"
    assert_equal nonblocking, nonblock?(io), "#{label}: the call changed O_NONBLOCK"
    assert_equal EAGAIN, at_once(selector) { selector.io_read(Fiber.current, io, buffer, 0) }, "#{label}: drained"
  ensure
    selector&.close
  end
end

# (5) URing: an attempt that may not wait, on a regular file of a frozen
# filesystem, must not block the thread (the GVL is held): the ring's op
# with RWF_NOWAIT answers at once (the write takes the superblock's freeze
# lock with a trylock; the read does not take the file-position lock),
# where pwritev2/preadv2 wait until the thaw. Needs root: the test makes a
# small ext4 image, attaches it to a loop device and mounts it in a
# temporary directory; a thread of the test process freezes it for
# FREEZE_SECONDS once the child is ready, and thaws it whatever happens.
module SoundnessNowaitFrozenFilesystem
  include SoundnessNowaitAttempt

  FREEZE_SECONDS = 1.5
  # "Well under the freeze": a blocked call comes back after FREEZE_SECONDS.
  PROMPT = 0.5
  IMAGE_BYTES = 32 << 20
  TOOLS = %w[mkfs.ext4 losetup mount umount fsfreeze].freeze

  def test_first_try_of_a_write_to_a_frozen_filesystem_does_not_block_the_thread
    selector_class
    with_ext4_mount do |mount|
      path = File.join(mount, "written")
      File.write(path, "")
      answers = with_freeze(mount) do |wait_for_freeze|
        isolated(label: "io_write on a frozen filesystem", timeout: FREEZE_SECONDS + 8) do
          selector = new_selector
          file = File.open(path, "w")
          ticks = []
          ticker = Thread.new do
            loop do
              ticks << monotonic
              sleep 0.01
            end
          end
          step "waiting for the freeze"
          wait_for_freeze.call
          start = monotonic
          answer, = start_call(selector) { selector.io_write(Fiber.current, file, buffer_of("hello"), 5) }
          back = monotonic - start
          step "io_write switched back after #{back.round(3)}s"
          result = answer.call(timeout: FREEZE_SECONDS + 3)
          ticker.kill
          file.close
          {back: back, ticks: ticks.count { |tick| tick > start && tick < start + FREEZE_SECONDS - 0.3 },
           result: result, content: File.read(path)}
        end
      end
      assert_operator answers[:back], :<, PROMPT,
                      "io_write switched back only after #{answers[:back].round(2)}s (frozen for #{FREEZE_SECONDS}s)"
      assert_operator answers[:ticks], :>=, 20, "another thread ticked #{answers[:ticks]} times while frozen"
      assert_equal [5, "hello"], answers.values_at(:result, :content), "the write, after the thaw"
    end
  end

  def test_zero_length_read_does_not_wait_for_the_file_position_lock
    selector_class
    with_ext4_mount do |mount|
      path = File.join(mount, "cached")
      File.write(path, "cached data")
      answers = with_freeze(mount) do |wait_for_freeze|
        isolated(label: "length 0 io_read, file position held", timeout: FREEZE_SECONDS + 8) do
          selector = new_selector
          file = File.open(path, "r+")
          step "waiting for the freeze"
          wait_for_freeze.call
          # write(2) takes the file-position lock, then waits for the thaw.
          writer = Thread.new { file.syswrite("x") }
          sleep 0.2
          writer_blocked = writer.alive?
          buffer = IO::Buffer.new(64)
          start = monotonic
          answer, = start_call(selector) { selector.io_read(Fiber.current, file, buffer, 0) }
          back = monotonic - start
          step "io_read switched back after #{back.round(3)}s"
          result = answer.call(timeout: FREEZE_SECONDS + 3)
          writer.join(FREEZE_SECONDS + 3)
          file.close
          {back: back, writer_blocked: writer_blocked, result: result, data: buffer.get_string(0, 11)}
        end
      end
      assert answers[:writer_blocked], "the other thread's write(2) did not wait for the thaw"
      assert_operator answers[:back], :<, PROMPT,
                      "the read switched back only after #{answers[:back].round(2)}s (frozen for #{FREEZE_SECONDS}s)"
      assert_equal [11, "cached data"], answers.values_at(:result, :data)
    end
  end

  private

  # A fresh ext4 filesystem on a loop device, mounted in a temporary
  # directory, for the block; thawed, unmounted and detached after it.
  def with_ext4_mount
    skip "needs root (mounts and freezes a loop-mounted ext4 filesystem)" unless Process.euid.zero?
    @tools = TOOLS.to_h { |tool| [tool, which(tool)] }
    missing = TOOLS.reject { |tool| @tools[tool] }
    skip "needs #{missing.join(", ")} (a loop-mounted ext4 filesystem to freeze)" unless missing.empty?

    dir = Dir.mktmpdir("io-event-frozen-fs")
    image = File.join(dir, "ext4.img")
    mount = File.join(dir, "mnt")
    Dir.mkdir(mount)
    File.open(image, "w") { |file| file.truncate(IMAGE_BYTES) }
    ok, output = tool("mkfs.ext4", "-q", "-F", image)
    skip "mkfs.ext4 cannot make a filesystem here: #{output.strip}" unless ok
    ok, output = tool("losetup", "-f", "--show", image)
    skip "no loop device here (losetup -f --show: #{output.strip})" unless ok
    device = output.strip
    ok, output = tool("mount", "-t", "ext4", device, mount)
    skip "cannot mount #{device} here: #{output.strip}" unless ok
    mounted = true
    yield mount
  ensure
    if mounted
      thaw(mount)
      mounted = !unmount(mount)
    end
    if device
      ok, output = tool("losetup", "-d", device)
      warn "#{name}: losetup -d #{device}: #{output.strip}" unless ok
    end
    if mounted
      warn "#{name}: #{mount} could not be unmounted; left in place"
    elsif dir
      FileUtils.rm_rf(dir)
    end
  end

  # Yields a callable for the child: it says it is ready, then returns once
  # a thread of this process has frozen `mount` (which it thaws
  # FREEZE_SECONDS later). The freeze is always undone before this returns.
  def with_freeze(mount)
    ready_reader, ready_writer = IO.pipe
    go_reader, go_writer = IO.pipe
    freezer = Thread.new do
      Thread.current.report_on_exception = false
      # The child says it is ready, or has gone (end of file: nothing to freeze).
      next :no_child unless IO.select([ready_reader], nil, nil, 10) && ready_reader.read(1)

      frozen, output = tool("fsfreeze", "-f", mount)
      begin
        go_writer.write(frozen ? "f" : "n")
        sleep FREEZE_SECONDS if frozen
        frozen ? :frozen : output
      ensure
        thaw(mount) if frozen
      end
    end
    wait_for_freeze = lambda do
      ready_writer.write("r")
      raise "the freezer thread did not answer" unless IO.select([go_reader], nil, nil, 10)
      raise "fsfreeze -f #{mount} failed" unless go_reader.read(1) == "f"
    end
    value = yield wait_for_freeze
    outcome = freezer.value
    flunk "fsfreeze -f #{mount} failed: #{outcome}" unless outcome == :frozen
    value
  ensure
    # The child has gone: the freezer sees end of file if it still waits.
    ready_writer&.close
    begin
      freezer&.join(FREEZE_SECONDS + 12) || freezer&.kill
    rescue StandardError
      nil # already reported by `value`, or the block's own failure wins
    end
    thaw(mount)
    [ready_reader, go_reader, go_writer].each { |io| io&.close }
  end

  def thaw(mount)
    tool("fsfreeze", "-u", mount)
  end

  # Unmounts `mount`, waiting a little for files that are still being
  # released (a ring's files go after its process); detaches it lazily if
  # it stays busy. Whether it is unmounted.
  def unmount(mount)
    deadline = monotonic + 5
    loop do
      ok, output = tool("umount", mount)
      return true if ok
      break unless output.include?("busy") && monotonic < deadline

      sleep 0.05
    end
    tool("umount", "-l", mount).first
  end

  # [success, output] of one of TOOLS (never raises for a failure).
  def tool(name, *arguments)
    output, status = Open3.capture2e(@tools.fetch(name), *arguments)
    [status.success?, output]
  rescue SystemCallError => error
    [false, error.message]
  end

  # The path of `name` (in PATH, or in /sbin or /usr/sbin), or nil.
  def which(name)
    (ENV.fetch("PATH", "").split(File::PATH_SEPARATOR) | %w[/sbin /usr/sbin])
      .map { |dir| File.join(dir, name) }
      .find { |path| File.file?(path) && File.executable?(path) }
  end
end

SelectorVariants.define("SoundnessNowaitPositionOnStream", SoundnessNowaitPositionOnStream,
                        variants: SelectorVariants::PLAIN)
SelectorVariants.define("SoundnessNowaitRefusedSyscalls", SoundnessNowaitRefusedSyscalls,
                        variants: SelectorVariants::PLAIN)
SelectorVariants.define("SoundnessNowaitRefusingFiles", SoundnessNowaitRefusingFiles,
                        variants: SelectorVariants::PLAIN)
SelectorVariants.define("SoundnessNowaitFrozenFilesystem", SoundnessNowaitFrozenFilesystem,
                        variants: SelectorVariants::PLAIN.select { |variant| variant.class_name == "URing" })
