# frozen_string_literal: true

# Issue 9, item 10: random bad arguments to every selector method. Wrong
# types, negative and huge numbers, closed IOs, freed / read-only / empty
# buffers, nil, dead and unborn fibers, wrong arity. Each call must answer
# with a clear exception (TypeError, ArgumentError, IOError, Errno::*,
# RangeError, FiberError, IO::Buffer's own errors), a normal result, or park
# its fiber; never crash the VM, never raise an internal error (a panic, a
# "selector is in use" RuntimeError), never leak a descriptor.
#
# Each method is fuzzed in its own child process with a fixed seed, so a
# crash names the call (its last `step`) and the run can be repeated.

require_relative "support"
require "tempfile"

module SoundnessBadArguments
  include Soundness::Helpers

  CALLS = Integer(ENV.fetch("SOUNDNESS_FUZZ_CALLS", "120"))

  BUFFER_ERRORS = [IO::Buffer::AccessError, IO::Buffer::AllocationError, IO::Buffer::InvalidatedError,
                   IO::Buffer::LockedError].freeze

  def clear?(error)
    (Soundness::CLEAR_ERRORS + BUFFER_ERRORS).any? { |klass| error.is_a?(klass) }
  end

  # Everything a call may be handed. Built inside the child; kept in @pool so
  # nothing is collected during the run.
  def build_pool
    pool = {}
    input, output = IO.pipe
    closed_in, closed_out = IO.pipe
    closed_in.close
    closed_out.close
    file = Tempfile.new("soundness-args")
    file.write("content of a regular file")
    file.flush
    readonly_source = File.open(file.path)
    freed = IO::Buffer.new(16)
    freed.free
    dead = Fiber.new {}
    dead.resume
    unborn = Fiber.new {}
    other_thread_fiber = Thread.new { Fiber.new {} }.value
    huge = [2**31, 2**32, 2**63 - 1, 2**63, 2**64, 2**100, -2**31 - 1, -2**63, -2**64]
    junk = [nil, true, "1", :sym, 1.5, Float::NAN, Float::INFINITY, -1.0, Object.new, [], {}, Complex(1, 1), Rational(1, 3)]
    pool[:fiber] = [nil, 1, "fiber", Object.new, dead, unborn, other_thread_fiber, Fiber, :fiber]
    pool[:io] = [nil, -1, 0, 2**40, "io", :io, Object.new, closed_in, closed_out, input, output, file, IO::Buffer.new(1)]
    pool[:events] = [nil, -1, 0, 1, 4, 7, 2**32 + 1, 2**64, 1.5, "1", :readable, IO::READABLE | IO::WRITABLE | IO::PRIORITY]
    pool[:buffer] = [nil, "string", +"mutable string", freed, IO::Buffer.new(0), IO::Buffer.new(16),
                     IO::Buffer.map(readonly_source, 8, 0, IO::Buffer::READONLY), Object.new, 8, []]
    pool[:number] = [-1, 0, 1, 8, 15, 16, 17, 4096, *huge, nil, "1", 1.5, Float::NAN, Float::INFINITY, :one]
    pool[:pid] = [nil, -2**31, -1, 0, 1, Process.pid, 2**22 + 12_345, 2**31, 2**64, "1", 1.5, :pid]
    pool[:flags] = [nil, -1, 0, Process::WNOHANG, Process::WUNTRACED, 0xFFFF, 2**40, "0", 1.5]
    pool[:duration] = [-1, 0, -0.5, -Float::INFINITY, Float::NAN, "0", :zero, Object.new, [], Complex(0, 1), true, -2**64, Rational(-1, 2)]
    pool[:fd] = [nil, -1, -2**31, 1_000_000, 2**31, 2**64, "3", 1.5, :fd, Object.new]
    pool[:any] = junk + huge
    @pool = [pool, input, output, readonly_source, file]
    pool
  end

  # Argument kinds of each method (after the receiver), by arity form.
  SIGNATURES = {
    io_wait: [%i[fiber io events]],
    io_read: [%i[fiber io buffer number], %i[fiber io buffer number number]],
    io_write: [%i[fiber io buffer number], %i[fiber io buffer number number]],
    io_pread: [%i[fiber io buffer number number number]],
    io_pwrite: [%i[fiber io buffer number number number]],
    io_close: [%i[fd]],
    process_wait: [%i[fiber pid flags]],
    resume: [%i[fiber], %i[fiber any], %i[fiber any any]],
    raise: [%i[fiber], %i[fiber any], %i[fiber any any]],
    push: [%i[fiber]],
    select: [%i[duration]],
    transfer: [[]],
    new: [%i[any]],
  }.freeze

  # One random argument list for `name`: mostly bad, now and then a valid
  # fiber (the current one) so the later checks are reached too.
  def random_arguments(name, pool, random)
    form = SIGNATURES.fetch(name).sample(random: random)
    args = form.map { |kind| pool.fetch(kind).sample(random: random) }
    args[0] = Fiber.current if form.first == :fiber && random.rand < 0.3 && !%i[resume raise push].include?(name)
    # Too few (never for select: select() is select(nil), a valid wait forever).
    args = args.first(random.rand(args.size)) if random.rand < 0.05 && !args.empty? && name != :select
    args += [nil] if random.rand < 0.05 # too many
    args
  end

  def call(selector, name, args)
    if name == :new
      built = SelectorVariants.build(selector_variant, *args)
      built.select(0)
      built.close
      built
    else
      selector.public_send(name, *args)
    end
  end

  def fuzz(name)
    require_selector_method(name) unless name == :new
    isolated(label: "fuzzing #{name}", timeout: 10) do
      GC.start
      fds_before = fd_list
      pool = build_pool
      selector = new_selector(Fiber.current)
      random = Random.new(name.to_s.sum * 7919)
      unclear = []
      CALLS.times do |index|
        args = random_arguments(name, pool, random)
        step "call #{index}: #{name}(#{args.map { |arg| arg.inspect[0, 40] }.join(', ')})"
        outcome = in_fiber { call(selector, name, args) }
        if outcome[0] == :raised && !clear?(outcome[1])
          unclear << "#{name}(#{args.map { |arg| arg.inspect[0, 30] }.join(', ')}) raised #{outcome[1].class}: #{outcome[1].message.lines.first.to_s.strip[0, 80]}"
        end
        # Pushed fibers and anything made ready run now; that must not crash either.
        settled = in_fiber { selector.select(0) } if index % 10 == 9 || name == :push
        # select is run from a plain fiber here, so it may legitimately refuse.
        if settled && settled[0] == :raised && !clear?(settled[1]) && !settled[1].is_a?(RuntimeError)
          unclear << "select(0) after #{name}(#{args.map { |arg| arg.inspect[0, 30] }.join(', ')}) raised #{settled[1].class}: #{settled[1].message.lines.first.to_s.strip[0, 80]}"
        end
      end
      step "closing"
      selector.close
      assert_kind_of Integer, new_selector(Fiber.current).tap(&:close).then { 0 }
      pool_ios = @pool[1..]
      pool_ios.each { |io| io.respond_to?(:close!) ? io.close! : io.close }
      pool[:io].each { |io| io.close if io.is_a?(IO) && !io.closed? }
      leaked = fd_list - fds_before
      assert_empty unclear.uniq.first(12), "unclear exceptions from #{name} (#{unclear.uniq.size} distinct)"
      assert_empty describe_fds(leaked), "descriptors leaked by fuzzing #{name}"
      true
    end
  end

  SIGNATURES.each_key do |name|
    define_method("test_random_bad_arguments_to_#{name}") { fuzz(name) }
  end

  # Wrong arity for the methods that take none.
  def test_wrong_arity_raises_argument_error
    isolated(label: "wrong arity") do
      selector = new_selector(Fiber.current)
      wrong = {
        wakeup: [1], close: [1], "closed?": [1], "ready?": [1], idle_duration: [1], loop: [1],
        yield: [1], select: [1, 2], push: [], io_close: [], io_wait: [Fiber.current], resume: [],
      }.filter_map do |name, args|
        next unless selector.respond_to?(name)

        outcome = in_fiber { selector.public_send(name, *args) }
        next if outcome[0] == :raised && outcome[1].is_a?(ArgumentError)

        "#{name}(#{args.inspect[1...-1]}) #{describe_outcome(outcome)}"
      end
      assert_empty wrong, "wrong arity must raise ArgumentError"
      selector.close
      true
    end
  end

  # The targeted cases of PROTOCOL.md "Errors": a closed IO raises IOError.
  def test_closed_io_raises_io_error_in_every_operation
    isolated(label: "closed IO") do
      selector = new_selector(Fiber.current)
      input, output = IO.pipe
      input.close
      output.close
      buffer = IO::Buffer.new(8)
      operations = {
        io_wait: -> { selector.io_wait(Fiber.current, input, IO::READABLE) },
        io_read: -> { selector.io_read(Fiber.current, input, buffer, 1) },
        io_write: -> { selector.io_write(Fiber.current, output, buffer, 1) },
        io_pread: -> { selector.io_pread(Fiber.current, input, buffer, 0, 1, 0) },
        io_pwrite: -> { selector.io_pwrite(Fiber.current, output, buffer, 0, 1, 0) },
      }
      wrong = operations.filter_map do |name, operation|
        next unless selector.respond_to?(name)

        outcome = in_fiber(&operation)
        next if outcome[0] == :raised && outcome[1].is_a?(IOError)

        "#{name} #{describe_outcome(outcome)}"
      end
      assert_empty wrong, "an operation on a closed IO must raise IOError"
      selector.close
      true
    end
  end

  # A process that is not our child never reports to us: answer at once
  # (ECHILD, or Process::Status.wait's pid -1 status), never park forever.
  def test_process_wait_on_a_pid_that_is_not_a_child_answers_at_once
    require_selector_method(:process_wait)
    isolated(label: "process_wait on a non-child") do
      selector = new_selector(Fiber.current)
      wrong = [Process.pid, 1, Process.ppid].filter_map do |pid|
        outcome = in_fiber { selector.process_wait(Fiber.current, pid, 0) }
        next if outcome[0] == :raised && outcome[1].is_a?(Errno::ECHILD)
        # Process::Status.wait answers ECHILD with a status of pid -1: also clear.
        next if outcome[0] == :returned && outcome[1].is_a?(Process::Status) && outcome[1].pid == -1

        "process_wait(#{pid == Process.pid ? 'own pid' : pid}) #{describe_outcome(outcome)}"
      end
      assert_empty wrong, "process_wait on a process that is not our child must answer at once (ECHILD or a pid -1 status), not park forever"
      selector.close
      true
    end
  end
end

SelectorVariants.define("SoundnessBadArguments", SoundnessBadArguments, variants: SelectorVariants::PLAIN)
