# frozen_string_literal: true

# select(0) with nothing pending: what an event loop pays on every turn when it polls
# without work. Reports, for every selector:
#   - ns per select(0) call;
#   - ns per ready? call in the same run: the floor, a trivial method on the same object
#     (what any call from Ruby costs, loop included);
#   - system calls per select(0) call, counted with `strace -f -c` in a child process:
#     a run of 0 calls is subtracted from a run of 10,000, so start-up does not count.
# Baseline row: IO.select on an empty pipe with a zero timeout (blocking Ruby).
#
#   ruby benchmark/selector/select_zero.rb

require_relative "support"
require_relative "../counts/tools"
require "rbconfig"
require "tmpdir"

module SelectorBench
  module SelectZero
    # Each timed batch runs UNROLL calls per loop turn, so the loop itself weighs little.
    UNROLL = 10
    TURNS = 1_000
    SECONDS = 0.5
    SYSCALL_CALLS = 10_000
    BASELINE_NAME = "IO.select (blocking)"

    module_function

    def select_batch(selector, turns)
      i = 0
      while i < turns
        selector.select(0); selector.select(0); selector.select(0); selector.select(0); selector.select(0)
        selector.select(0); selector.select(0); selector.select(0); selector.select(0); selector.select(0)
        i += 1
      end
    end

    def ready_batch(selector, turns)
      i = 0
      while i < turns
        selector.ready?; selector.ready?; selector.ready?; selector.ready?; selector.ready?
        selector.ready?; selector.ready?; selector.ready?; selector.ready?; selector.ready?
        i += 1
      end
    end

    def io_select_batch(io, turns)
      readers = [io]
      i = 0
      while i < turns
        IO.select(readers, nil, nil, 0); IO.select(readers, nil, nil, 0)
        IO.select(readers, nil, nil, 0); IO.select(readers, nil, nil, 0)
        IO.select(readers, nil, nil, 0); IO.select(readers, nil, nil, 0)
        IO.select(readers, nil, nil, 0); IO.select(readers, nil, nil, 0)
        IO.select(readers, nil, nil, 0); IO.select(readers, nil, nil, 0)
        i += 1
      end
    end

    def measure_selector(klass)
      selector = klass.new(Fiber.current)
      calls = TURNS * UNROLL
      # Warm up: the first select may set things up.
      select_batch(selector, 10)
      ready_batch(selector, 10)
      # Alternate the two batches so that both see the same background load.
      select_samples = []
      ready_samples = []
      deadline = SelectorBench.now + SECONDS
      while select_samples.size < 5 || (SelectorBench.now < deadline && select_samples.size < 500)
        started = SelectorBench.now_ns
        select_batch(selector, TURNS)
        middle = SelectorBench.now_ns
        ready_batch(selector, TURNS)
        select_samples << (middle - started).fdiv(calls)
        ready_samples << (SelectorBench.now_ns - middle).fdiv(calls)
      end
      { select_ns: SelectorBench.median(select_samples), ready_ns: SelectorBench.median(ready_samples) }
    ensure
      selector&.close
    end

    def measure_io_select
      reader, writer = IO.pipe
      calls = TURNS * UNROLL
      io_select_batch(reader, 10)
      { select_ns: SelectorBench.ns_per_call(calls, SECONDS) { io_select_batch(reader, TURNS) } }
    ensure
      reader&.close
      writer&.close
    end

    # -- system calls, counted by strace in a child ------------------------------

    def strace_usable?
      return @strace_usable if defined?(@strace_usable)

      @strace_usable = system("strace", "-f", "-c", "-o", File::NULL, "true", out: File::NULL, err: File::NULL)
    end

    # Syscall counts ({name => calls}) of a child that makes +calls+ select(0) calls.
    def strace_counts(name, calls)
      Dir.mktmpdir("select-zero") do |dir|
        output = File.join(dir, "strace.txt")
        command = ["strace", "-f", "-c", "-o", output, RbConfig.ruby, __FILE__, "--child", name, calls.to_s]
        ok = system(*command, out: File::NULL, err: File::NULL)
        return nil unless ok && File.exist?(output)

        BenchTools.parse_strace(File.read(output))
      end
    end

    # {per_call: Float, detail: "io_uring_enter 1.00"} or nil when strace cannot run.
    def syscalls_per_call(name)
      return nil unless strace_usable?

      base = strace_counts(name, 0)
      loaded = strace_counts(name, SYSCALL_CALLS)
      return nil unless base && loaded

      extra = loaded.to_h { |syscall, count| [syscall, count - base.fetch(syscall, 0)] }
      extra.select! { |_, count| count.positive? }
      total = extra.values.sum
      top = extra.max_by { |_, count| count }
      detail = top && top[1].fdiv(SYSCALL_CALLS) >= 0.01 ? format("%s %.2f", top[0], top[1].fdiv(SYSCALL_CALLS)) : ""
      { per_call: total.fdiv(SYSCALL_CALLS), detail: detail }
    end

    # The traced child: build the selector, warm it up, make +calls+ select(0) calls.
    def child(name, calls)
      if name == BASELINE_NAME
        reader, _writer = IO.pipe
        io_select_batch(reader, 10)
        io_select_batch(reader, calls / UNROLL)
      else
        selector = IO::Event::Selector.const_get(name).new(Fiber.current)
        select_batch(selector, 10)
        select_batch(selector, calls / UNROLL)
      end
    end

    # -- the benchmark -------------------------------------------------------

    def run
      results = {}
      SelectorBench.selectors.each do |name, klass|
        results[name] = SelectorBench.isolated { measure_selector(klass) }.merge(syscalls: syscalls_per_call(name))
      end
      results[BASELINE_NAME] =
        SelectorBench.isolated { measure_io_select }.merge(syscalls: syscalls_per_call(BASELINE_NAME))
      results
    end

    def report(results)
      names = results.keys
      base = SelectorBench.baseline_name(names)
      rows = results.map do |name, result|
        syscalls = result[:syscalls]
        next [name, "failed: #{result[:error]}", "", "", "", "", ""] if result[:error]

        [
          name,
          SelectorBench.number(result[:select_ns], 1),
          SelectorBench.number(result[:ready_ns], 1),
          result[:ready_ns] ? SelectorBench.ratio(result[:select_ns], result[:ready_ns]) : "-",
          syscalls ? format("%.2f", syscalls[:per_call]) : "n/a",
          syscalls ? syscalls[:detail] : "",
          SelectorBench.ratio(result[:select_ns], base && results.dig(base, :select_ns))
        ]
      end
      headers = ["selector", "select(0) ns", "ready? ns", "vs ready?", "syscalls/call", "mostly", "vs #{base || '-'}"]
      text = SelectorBench.table("select(0) with nothing pending (median of batches; syscalls: strace -f -c, " \
                                 "#{SYSCALL_CALLS} calls minus 0)", headers, rows)
      uring = results["URing"]
      if uring && !uring[:error]
        syscalls = uring[:syscalls]
        ratio = uring[:select_ns].fdiv(uring[:ready_ns])
        text += "\ntarget: URing select(0) makes 0 syscalls/call: " \
                "#{syscalls ? format('%.2f', syscalls[:per_call]) : 'n/a'} " \
                "(#{SelectorBench.verdict(syscalls && syscalls[:per_call] < 0.005)})"
        text += "\ntarget: URing select(0) costs <= 2x ready?: #{format('%.2fx', ratio)} " \
                "(#{SelectorBench.verdict(ratio <= 2.0)})"
      end
      text
    end
  end
end

if $PROGRAM_NAME == __FILE__
  if ARGV[0] == "--child"
    SelectorBench::SelectZero.child(ARGV[1], Integer(ARGV[2]))
  else
    puts SelectorBench::SelectZero.report(SelectorBench::SelectZero.run)
  end
end
