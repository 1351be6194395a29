# frozen_string_literal: true

# The figures that do not drift, measured per build of the extension and per selector,
# by running benchmark/counts/probe.rb in child processes:
#
#   <workload>.syscalls         system calls per operation (strace -f -c, N ops minus 0)
#   <workload>.futex            futex calls per operation (same runs)
#   <workload>.instructions     user-space instructions per operation (callgrind, N minus 0),
#   <workload>.instructions_extension / _libc   the part executed in our .so / in libc
#   <workload>.ns               nanoseconds per operation (best of alternating runs; drifts)
#   <workload>.per_second       operations per second, from .ns (ping-pong: round trips/s)
#   blocking_select.threads     native threads of the process after the blocking selects
#
# Builds are [label, path of an io_event_uring.so]; each is copied once at the start
# (a rebuild during the run changes nothing) and the runs alternate between builds,
# so background load hits every build alike.

require "json"
require "rbconfig"
require_relative "../build"
require_relative "tools"

module BenchCounts
  PROBE = File.expand_path("probe.rb", __dir__)
  SELECTORS = %w[URing EPoll Select].freeze

  # Operations per run, per tool. nil: not measured that way.
  Workload = Struct.new(:name, :unit, :strace, :callgrind, :timed, keyword_init: true)
  WORKLOADS = [
    Workload.new(name: "select_zero", unit: "call", strace: 10_000, callgrind: 100_000, timed: 300_000),
    Workload.new(name: "wakeup", unit: "call", strace: 10_000, callgrind: 100_000, timed: 300_000),
    Workload.new(name: "ping_pong_rw", unit: "round trip", strace: 2_000, callgrind: 5_000, timed: 20_000),
    Workload.new(name: "ping_pong_wait", unit: "round trip", strace: 2_000, callgrind: 5_000, timed: 20_000),
    Workload.new(name: "blocking_select", unit: "select(0.0005)", strace: 200, callgrind: nil, timed: 200)
  ].freeze

  Build = Struct.new(:label, :source, :dir, :sha256, :mtime, keyword_init: true)
  Options = Struct.new(:builds, :selectors, :strace, :callgrind, :timing, :rounds, :workloads, :log,
                       keyword_init: true)

  module_function

  # The pure-Ruby Select selector is some 40 times slower at ping-pong: fewer round trips.
  def count_for(workload, selector, tool)
    count = workload[tool]
    selector == "Select" && workload.name.start_with?("ping_pong") ? count / 10 : count
  end

  # "before=/work/baseline/io_event_uring.so,after=lib" -> [[label, path], ...];
  # "lib" or "current" means the library built into this checkout's lib/.
  def parse_builds(text)
    text.split(",").map do |part|
      label, path = part.split("=", 2)
      raise ArgumentError, "build #{part.inspect}: want LABEL=PATH" if label.to_s.empty? || path.to_s.empty?

      [label.strip, %w[lib current].include?(path.strip) ? BenchBuild.current_so : File.expand_path(path.strip)]
    end
  end

  # Copies each .so so that the whole run measures one file per label.
  def prepare_builds(specs)
    require "digest"
    specs.map do |label, path|
      path = File.join(path, BenchBuild::RELATIVE) if File.directory?(path)
      raise ArgumentError, "build #{label}: no such file #{path}" unless File.file?(path)

      Build.new(label: label, source: path, dir: BenchBuild.snapshot(path, label),
                sha256: Digest::SHA256.file(path).hexdigest[0, 12], mtime: File.mtime(path))
    end
  end

  def env_for(build)
    { BenchBuild::VARIABLE => build.dir, "RUBYOPT" => nil }
  end

  def probe_command(workload, selector, count)
    [RbConfig.ruby, PROBE, workload, selector, count.to_s]
  end

  # Selector names that +build+ defines (URing only where a ring can be made).
  def available(build)
    script = 'require "io/event"; puts IO::Event::Selector.constants.select { |n| ' \
             'k = IO::Event::Selector.const_get(n); k.is_a?(Class) && k.method_defined?(:select) }'
    output = BenchTools.run(env_for(build), [RbConfig.ruby, "-r", File.join(BenchBuild::ROOT, "benchmark/build.rb"),
                                             "-e", script], "listing selectors")
    output.split
  end

  def parse_probe(stdout)
    line = stdout.lines.reverse.find { |l| l.start_with?("{") }
    raise BenchTools::Failure, "probe printed no result: #{stdout[0, 300]}" unless line

    JSON.parse(line)
  end

  # -- one measurement of one (build, selector, workload) ----------------------

  def strace_figures(build, selector, workload)
    base, = BenchTools.strace(env_for(build), probe_command(workload.name, selector, 0))
    n = count_for(workload, selector, :strace)
    loaded, stdout = BenchTools.strace(env_for(build), probe_command(workload.name, selector, n))
    n = n.to_f
    extra = loaded.to_h { |name, calls| [name, calls - base.fetch(name, 0)] }.select { |_, calls| calls != 0 }
    figures = {
      "syscalls" => (loaded.values.sum - base.values.sum) / n,
      "futex" => extra.fetch("futex", 0) / n
    }
    top = extra.sort_by { |name, calls| [-calls, name] }.first(4).select { |_, calls| calls / n >= 0.01 }
    figures["syscalls_detail"] = top.map { |name, calls| format("%s %.2f", name, calls / n) }.join(", ")
    figures["threads"] = parse_probe(stdout)["threads_after"] if workload.name == "blocking_select"
    figures
  end

  def callgrind_figures(build, selector, workload)
    base, = BenchTools.callgrind(env_for(build), probe_command(workload.name, selector, 0))
    n = count_for(workload, selector, :callgrind)
    loaded, = BenchTools.callgrind(env_for(build), probe_command(workload.name, selector, n))
    n = n.to_f
    {
      "instructions" => (loaded[:total] - base[:total]) / n,
      "instructions_extension" => (loaded[:extension] - base[:extension]) / n,
      "instructions_libc" => (loaded[:libc] - base[:libc]) / n,
      "instructions_ruby" => (loaded[:ruby] - base[:ruby]) / n
    }
  end

  def timed_figures(build, selector, workload)
    stdout = BenchTools.run(env_for(build), probe_command(workload.name, selector, count_for(workload, selector, :timed)),
                            "#{workload.name} #{selector}")
    result = parse_probe(stdout)
    unless result["so"]&.start_with?(build.dir)
      raise BenchTools::Failure, "#{build.label}: the probe loaded #{result['so'].inspect}, not the snapshot in #{build.dir}"
    end

    ns = result["ns_per_op"]
    figures = { "ns" => ns, "per_second" => 1e9 / ns }
    figures["threads"] = result["threads_after"] if workload.name == "blocking_select"
    figures
  end

  # -- the whole matrix ----------------------------------------------------------

  # Returns { label => { selector => { "workload.metric" => value } } } and a list of
  # failures. Every step alternates between builds (and reverses the order every other
  # timing round), so that a build is never measured only while the machine is busy.
  def measure(options)
    run = Run.new(options)
    steps = []
    steps << :strace if options.strace && BenchTools.strace?
    steps << :callgrind if options.callgrind && BenchTools.valgrind?
    steps.each do |tool|
      run.each_case(tool, options.builds) do |build, selector, workload|
        send("#{tool}_figures", build, selector, workload)
      end
    end
    if options.timing
      options.rounds.times do |round|
        run.each_case(:timed, round.even? ? options.builds : options.builds.reverse) do |build, selector, workload|
          new = timed_figures(build, selector, workload)
          old = run.figures[build.label][selector]["#{workload.name}.ns"]
          old && old <= new["ns"] ? {} : new
        end
      end
    end
    [run.figures.transform_values { |by_selector| by_selector.to_a.to_h }, run.failures]
  end

  # The state of one measure: what each build defines, the figures so far, failures.
  class Run
    attr_reader :figures, :failures

    def initialize(options)
      @options = options
      @selectors = options.builds.to_h { |build| [build.label, options.selectors & BenchCounts.available(build)] }
      @figures = options.builds.to_h { |build| [build.label, Hash.new { |h, k| h[k] = {} }] }
      @failures = []
      @workloads = WORKLOADS.select { |w| options.workloads.nil? || options.workloads.include?(w.name) }
    end

    # Yields every (build, selector, workload) that +tool+ measures, builds innermost;
    # records the Hash the block returns, or the failure it raises.
    def each_case(tool, builds)
      @workloads.each do |workload|
        next unless workload[tool]

        @options.log&.call("  #{tool} #{workload.name}")
        @options.selectors.each do |selector|
          builds.each do |build|
            next unless @selectors[build.label].include?(selector)

            begin
              values = yield(build, selector, workload)
              values.each { |metric, value| @figures[build.label][selector]["#{workload.name}.#{metric}"] = value }
            rescue BenchTools::Failure, SystemCallError => error
              @failures << "#{build.label} #{selector} #{workload.name} #{tool}: #{error.message}"
            end
          end
        end
      end
    end
  end
end
