# frozen_string_literal: true

# Shared helpers for the selector microbenchmarks: which selectors to run, clocks,
# statistics, and plain-text tables. Every benchmark runs every selector defined in this
# process in one run (URing, EPoll, Select, plus a blocking-Ruby baseline where one makes
# sense) and prints ratios, so numbers from one noisy machine are still comparable.

# lib/ on the load path; IO_EVENT_BENCH_SO picks another build of the extension.
# IO::Buffer warns that it is experimental on Ruby 3.1; the benchmarks know.
Warning[:experimental] = false

require_relative "../build"
require "io/event"
require "tempfile"
require "io/wait"

module SelectorBench
  ORDER = %w[URing EPoll Select].freeze
  # Ratios are taken against this selector when it exists (else the next one here).
  BASELINES = %w[EPoll Select].freeze

  module_function

  # [[name, class], ...] for the selectors defined here, in ORDER. The environment
  # variable IO_EVENT_BENCH_SELECTORS (comma separated names) narrows the list.
  def selectors(env = ENV)
    found = IO::Event::Selector.constants.map(&:to_s).select do |name|
      klass = IO::Event::Selector.const_get(name)
      klass.is_a?(Class) && klass.method_defined?(:select)
    end
    found.sort_by! { |name| [ORDER.index(name) || ORDER.size, name] }
    wanted = env["IO_EVENT_BENCH_SELECTORS"]
    found &= wanted.split(",").map(&:strip) if wanted && !wanted.empty?
    found.map { |name| [name, IO::Event::Selector.const_get(name)] }
  end

  def baseline_name(names)
    BASELINES.find { |name| names.include?(name) }
  end

  def now
    Process.clock_gettime(Process::CLOCK_MONOTONIC)
  end

  def now_ns
    Process.clock_gettime(Process::CLOCK_MONOTONIC, :nanosecond)
  end

  # Value at fraction +p+ (0..1) of an already sorted array, nearest rank.
  def percentile(sorted, p)
    return nil if sorted.empty?

    sorted[[(p * sorted.size).ceil - 1, 0].max]
  end

  def median(values)
    percentile(values.sort, 0.5)
  end

  # Runs +block+ (which must do +calls+ operations) repeatedly for about +seconds+ and
  # returns the median nanoseconds per operation over the batches.
  def ns_per_call(calls, seconds)
    samples = []
    deadline = now + seconds
    while samples.size < 5 || (now < deadline && samples.size < 1000)
      started = now_ns
      yield
      samples << (now_ns - started).fdiv(calls)
    end
    median(samples)
  end

  # Runs the block in a forked child and returns its value (a Hash, passed back with
  # Marshal). A measurement that crashes the VM, raises or hangs then spoils only its own
  # row: the answer is { error: "..." }. Garbage a selector leaves behind also dies with
  # the child instead of being swept during the next measurement.
  def isolated(timeout = 60)
    reader, writer = IO.pipe
    log = Tempfile.new("selector-bench")
    pid = fork do
      reader.close
      $stderr.reopen(log.path, "w")
      result =
        begin
          yield
        rescue Exception => error # rubocop:disable Lint/RescueException
          { error: "#{error.class}: #{error.message}" }
        end
      writer.write(Marshal.dump(result))
      writer.close
      exit!(0)
    end
    writer.close
    data = +"".b
    deadline = now + timeout
    while (remaining = deadline - now).positive? && reader.wait_readable(remaining)
      chunk = reader.read_nonblock(65_536, exception: false)
      break if chunk.nil?

      data << chunk unless chunk == :wait_readable
    end
    status = wait_child(pid, [deadline - now, 1].max)
    return Marshal.load(data) if status&.success? && !data.empty? # rubocop:disable Security/MarshalLoad

    { error: child_failure(status, File.read(log.path)) }
  ensure
    reader&.close
    log&.close!
  end

  def wait_child(pid, timeout)
    deadline = now + timeout
    loop do
      _, status = Process.waitpid2(pid, Process::WNOHANG)
      return status if status
      break if now >= deadline

      sleep 0.01
    end
    Process.kill("KILL", pid)
    Process.waitpid2(pid)
    nil
  rescue Errno::ESRCH, Errno::ECHILD
    nil
  end

  def child_failure(status, log)
    how =
      if status.nil? then "timed out"
      elsif status.signaled? then "killed by SIG#{Signal.signame(status.termsig)}"
      else "exit #{status.exitstatus}"
      end
    why = log[/\[BUG\][^\n]*/] || log.lines.reject { |line| line.strip.empty? }.last&.strip
    "child #{how}#{why ? ": #{why}" : ''}"
  end

  def ratio(value, base)
    return "-" if value.nil? || base.nil? || base.zero?

    format("%.2fx", value.fdiv(base))
  end

  def number(value, digits = 0)
    return "-" if value.nil?
    return value if value.is_a?(String)

    text = format("%.#{digits}f", value)
    whole, fraction = text.split(".")
    whole = whole.reverse.scan(/\d{1,3}-?/).join(",").reverse
    fraction ? "#{whole}.#{fraction}" : whole
  end

  # A plain-text table. +rows+ are arrays of strings; columns after the first are
  # right-aligned.
  def table(title, headers, rows)
    widths = headers.map(&:length)
    rows.each { |row| row.each_with_index { |cell, i| widths[i] = [widths[i], cell.to_s.length].max } }
    line = lambda do |cells|
      cells.each_with_index.map { |cell, i| i.zero? ? cell.to_s.ljust(widths[i]) : cell.to_s.rjust(widths[i]) }.join("  ").rstrip
    end
    [title, line.call(headers), line.call(widths.map { |w| "-" * w }), *rows.map(&line)].join("\n")
  end

  # "met" / "NOT met" / "n/a" for a target line.
  def verdict(condition)
    case condition
    when nil then "n/a"
    when true then "met"
    else "NOT met"
    end
  end
end
