# frozen_string_literal: true

# Shared helpers for the adversarial ("hostile") suite of issue 9. Each
# contract module includes Soundness::Helpers and runs against the plain
# variants of the selector table:
#
#   SelectorVariants.define("SoundnessClose", SoundnessClose, variants: SelectorVariants::PLAIN)
#
# Every case that could crash the VM, hang, or corrupt memory runs in a CHILD
# process, under a short timeout, so that the test process itself only ever
# sees a failed assertion:
#
#   isolated(timeout: 5) do     # SOUNDNESS_INLINE=1 runs it in-process (debugging)
#     step "selector built"        # progress, reported if the child dies or hangs
#     assert_equal 1, 1           # assertions work in the child; a failure is re-raised here
#     :value                      # returned to the parent (Marshal, or its #inspect)
#   end
#
# `isolated` forks (the block sees the test's state); `isolated_script` runs a
# fresh `ruby -Ilib` for cases that must leave through `exit` (at_exit
# handlers, finalizers) or need a process that never had other threads.
#
# A child that dies from a signal, exits without reporting, or overruns its
# timeout (it is then killed with its whole process group) fails the test with
# the signal, the last `step` it reached and the tail of its stderr (where
# Ruby prints "[BUG] Segmentation fault").

require_relative "../test_helper"
require_relative "../support/selector_variants"
require "rbconfig"
require "tempfile"

module Soundness
  ROOT = File.expand_path("../..", __dir__)
  LIB = File.join(ROOT, "lib")

  # Seconds a child may run, unless a test says otherwise.
  CHILD_TIMEOUT = Float(ENV.fetch("SOUNDNESS_CHILD_TIMEOUT", "6"))

  # Exceptions a selector method may answer bad arguments with (PROTOCOL.md, "Errors").
  CLEAR_ERRORS = [TypeError, ArgumentError, IOError, SystemCallError, RangeError, FiberError].freeze

  # The reporting pipe of the current child (nil in the test process).
  @channel = nil
  class << self
    attr_accessor :channel
  end

  # Length-prefixed Marshal frames over a pipe.
  module Frames
    module_function

    def write(io, frame)
      data = Marshal.dump(frame)
      io.write([data.bytesize].pack("N"), data)
      io.flush
    rescue Errno::EPIPE, IOError
      nil
    end

    # Every complete frame at the start of `buffer` (consumed from it).
    def parse(buffer)
      frames = []
      while buffer.bytesize >= 4
        size = buffer.unpack1("N")
        break if buffer.bytesize < 4 + size

        frames << Marshal.load(buffer.byteslice(4, size)) # rubocop:disable Security/MarshalLoad
        buffer.replace(buffer.byteslice(4 + size, buffer.bytesize) || +"")
      end
      frames
    end
  end

  # Mixed into every soundness test class.
  module Helpers

    # Records progress in a child (no-op in the test process).
    def step(message)
      Frames.write(Soundness.channel, [:step, message.to_s]) if Soundness.channel
    end

    # Number of open descriptors of this process.
    def fd_count
      fd_list.size
    end

    # The open descriptors, without the one the listing itself used.
    def fd_list
      Dir.children("/proc/self/fd").map(&:to_i).select do |fd|
        File.readlink("/proc/self/fd/#{fd}")
      rescue SystemCallError
        false
      end.sort
    end

    # "7 -> anon_inode:[eventfd]" for each descriptor number.
    def describe_fds(numbers)
      numbers.map do |fd|
        "#{fd} -> #{File.readlink("/proc/self/fd/#{fd}")}"
      rescue SystemCallError
        "#{fd} (gone)"
      end
    end

    # Runs the block in a forked child; see the file comment. Returns the
    # block's value.
    def isolated(timeout: CHILD_TIMEOUT, label: nil, &block)
      # Skip here, not in the child (nor in a thread of it) when the
      # variant's class is missing from this build.
      selector_class if respond_to?(:selector_variant)
      # Debugging aid: SOUNDNESS_INLINE=1 runs the block in the test process.
      return block.call if ENV["SOUNDNESS_INLINE"] == "1"

      # Garbage of earlier tests (an unclosed selector, say) is collected here,
      # not in the child, where dropping it would test something else.
      GC.start
      reader, writer = IO.pipe
      log = Tempfile.new("soundness-child")
      pid = fork do
        reader.close
        Process.setpgid(0, 0)
        $stderr.reopen(log.path, "w")
        $stderr.sync = true
        Soundness.channel = writer
        before = assertions
        frame =
          begin
            value = yield
            [:ok, marshalable(value), assertions - before]
          rescue Minitest::Assertion, Minitest::Skip => error
            [error.is_a?(Minitest::Skip) ? :skip : :fail, error.message, error.backtrace&.first(8), assertions - before]
          rescue Exception => error # rubocop:disable Lint/RescueException
            [:error, "#{error.class}: #{error.message}", error.backtrace&.first(12), assertions - before]
          end
        Frames.write(writer, frame)
        exit!(0)
      end
      writer.close
      # GC_STRESS=1 stresses the child (it inherits GC.stress); the parent
      # only waits, and would spend its time collecting.
      stressed = GC.stress
      GC.stress = false
      timeout *= 10 if stressed
      collect_child(pid, reader, log, timeout, label || "child")
    ensure
      GC.stress = stressed unless stressed.nil?
      reader&.close unless reader&.closed?
      writer&.close unless writer&.closed?
      log&.close!
    end

    # Runs `code` in a fresh `ruby -Ilib` (with test/ on the load path too).
    # The script reports with `report(value)` / `step(message)` (defined for
    # it) and normally ends with `exit` or at the end of the script. Returns
    # [reported value or nil, Process::Status, stderr text]. A signal death or a
    # timeout fails the test.
    def isolated_script(code, timeout: CHILD_TIMEOUT, env: {}, label: "script")
      reader, writer = IO.pipe
      log = Tempfile.new("soundness-script")
      prelude = <<~RUBY
        $soundness_channel = IO.for_fd(#{writer.fileno}, autoclose: false)
        def step(message)
          data = Marshal.dump([:step, message.to_s])
          $soundness_channel.write([data.bytesize].pack("N"), data)
        end
        def report(value)
          data = Marshal.dump([:report, value])
          $soundness_channel.write([data.bytesize].pack("N"), data)
        end
        require "io/event"
      RUBY
      pid = Process.spawn(
        env, RbConfig.ruby, "-I", LIB, "-e", prelude + code,
        writer.fileno => writer.fileno, :err => log.path, :out => log.path, :pgroup => true
      )
      writer.close
      frames, status, stderr = wait_for_child(pid, reader, log, timeout, label)
      reported = frames.reverse.find { |frame| frame[0] == :report }
      [reported && reported[1], status, stderr]
    ensure
      reader&.close unless reader&.closed?
      writer&.close unless writer&.closed?
      log&.close!
    end

    # A selector of this variant, in a process that has lent a buffer before:
    # the first lend of a process checks the direct reads of IO::Buffer
    # against Ruby's own answers and takes the general path; later ones take
    # the short one (a buffer locked by the call alone, with no table entry).
    # `warm: false` leaves the first lend to the test.
    def lending_selector(warm: true)
      selector = new_selector(Fiber.current)
      return selector unless warm

      input, output = IO.pipe
      scratch = IO::Buffer.new(1)
      Fiber.new { selector.io_write(Fiber.current, output, scratch, 1) }.transfer
      drive_until(selector) { input.read_nonblock(1, exception: false) == "\0" }
      [input, output].each(&:close)
      scratch.free
      selector
    end

    # Writes to `output` until the pipe is full.
    def fill_pipe(output)
      loop { output.write_nonblock("x" * 65_536) }
    rescue IO::WaitWritable
      nil
    end

    # Drive `selector` while draining `input`, until `fiber` (a writer parked
    # on the full pipe behind `input`) has finished, at most 3 seconds.
    def drain_until_done(selector, input, fiber)
      deadline = monotonic + 3
      while fiber.alive? && monotonic < deadline
        input.read_nonblock(1 << 20, exception: false)
        selector.select(0.01)
      end
      !fiber.alive?
    end

    # Drive `selector` (select with `quantum`) until the block is true, at
    # most `timeout` seconds; false if it never became true.
    def drive_until(selector, timeout: 3, quantum: 0.02)
      deadline = monotonic + timeout
      until yield
        return false if monotonic > deadline

        selector.select(quantum)
      end
      true
    end

    def uring?
      selector_variant.class_name == "URing"
    end

    def native?
      selector_variant.class_name != "Select"
    end

    # Runs the block in a new fiber started from the current one (normally the
    # selector's loop). Returns [:returned, value], [:raised, exception], or
    # [:parked, fiber] when the block switched back without finishing.
    def in_fiber
      outcome = nil
      fiber = Fiber.new do
        outcome = [:returned, yield]
      rescue Exception => error # rubocop:disable Lint/RescueException
        outcome = [:raised, error]
      end
      fiber.transfer
      outcome || [:parked, fiber]
    end

    # "IOError" / "returned 3" / "parked": for failure messages.
    def describe_outcome(outcome)
      case outcome[0]
      when :raised then "raised #{outcome[1].class}: #{outcome[1].message}"
      when :returned then "returned #{outcome[1].inspect}"
      else "parked (switched away without an answer)"
      end
    end

    # Measures the block; returns [value or exception, seconds].
    def timed
      start = monotonic
      value =
        begin
          yield
        rescue Exception => error # rubocop:disable Lint/RescueException
          error
        end
      [value, monotonic - start]
    end

    private

    def marshalable(value)
      Marshal.dump(value)
      value
    rescue TypeError
      value.inspect
    end

    def collect_child(pid, reader, log, timeout, label)
      frames, status, stderr = wait_for_child(pid, reader, log, timeout, label)
      final = frames.reverse.find { |frame| %i[ok fail skip error].include?(frame[0]) }
      steps = frames.select { |frame| frame[0] == :step }.map { |frame| frame[1] }
      context = child_context(label, status, steps, stderr)
      if final.nil?
        flunk "#{label} died without reporting: #{describe_status(status)}\n#{context}"
      end
      self.assertions += final.last.to_i
      case final[0]
      when :ok
        unless status.success?
          flunk "#{label} reported success but then #{describe_status(status)}\n#{context}"
        end
        final[1]
      when :skip then skip final[1]
      when :fail
        raise Minitest::Assertion, "#{label}: #{final[1]}\n    #{Array(final[2]).join("\n    ")}\n#{context}"
      else
        error = RuntimeError.new("#{label} raised #{final[1]}\n#{context}")
        error.set_backtrace(Array(final[2]))
        raise error
      end
    end

    # Reads frames until the child exits (or the timeout kills it).
    def wait_for_child(pid, reader, log, timeout, label)
      buffer = +""
      frames = []
      status = nil
      deadline = monotonic + timeout
      loop do
        if IO.select([reader], nil, nil, 0.02)
          begin
            buffer << reader.read_nonblock(65_536)
          rescue IO::WaitReadable, EOFError
            nil
          end
          frames.concat(Frames.parse(buffer))
        end
        _, status = Process.waitpid2(pid, Process::WNOHANG)
        break if status

        next unless monotonic > deadline

        steps = frames.select { |frame| frame[0] == :step }.map { |frame| frame[1] }
        kill_group(pid)
        Process.waitpid(pid) rescue nil # rubocop:disable Style/RescueModifier
        flunk "#{label} HUNG: killed after #{timeout}s\n#{child_context(label, nil, steps, File.read(log.path))}"
      end
      begin
        loop { buffer << reader.read_nonblock(65_536) }
      rescue IO::WaitReadable, EOFError
        nil
      end
      frames.concat(Frames.parse(buffer))
      kill_group(pid)
      [frames, status, File.read(log.path)]
    end

    def kill_group(pid)
      Process.kill(:KILL, -pid)
    rescue Errno::ESRCH, Errno::EPERM
      nil
    end

    def describe_status(status)
      return "no status" unless status

      if status.signaled?
        "killed by SIG#{Signal.signame(status.termsig)}"
      else
        "exit status #{status.exitstatus}"
      end
    end

    def child_context(label, status, steps, stderr)
      lines = ["  #{label}: #{describe_status(status)}; last step: #{steps.last.inspect}"]
      tail = stderr.to_s.lines.map(&:strip).reject(&:empty?)
      interesting = tail.grep(/\[BUG\]|panicked|^fatal|Abort|double free|corrupted|malloc/).first(3)
      shown = interesting.empty? ? tail.first(3) : interesting
      lines.concat(shown.map { |line| "  stderr: #{line[0, 240]}" })
      lines.join("\n")
    end
  end
end
