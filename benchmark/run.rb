#!/usr/bin/env ruby
# frozen_string_literal: true

# `rake bench`: HTTP under wrk, then the counts that do not drift, then the selector
# microbenchmarks.
#
#   ruby benchmark/run.rb [--close] [--duration=SECONDS] [--rounds=N]
#                         [--selectors=URing,EPoll,...] [--builds=LABEL=PATH,...]
#                         [--no-http] [--no-keep-alive] [--no-per-request]
#                         [--no-counts] [--no-callgrind] [--no-micro] [--record]
#
# 1. Keep-alive HTTP (benchmark/http/keep_alive.rb): benchmark/server/event.rb for every
#    selector and the blocking baseline, wrk -c8 and -c64, requests/s, p99, CPU/request
#    (--close: one request per connection there too).
# 2. Connection-per-request HTTP (benchmark/http/per_request.rb): the io-event style
#    server benchmark/server/upstream.rb for every build and selector, wrk -c8 with
#    "Connection: close": requests/s, server CPU, context switches per request, native
#    threads, and instructions per request under callgrind.
# 3. Counts (benchmark/counts/measure.rb): system calls, futex calls, threads,
#    instructions and ns per operation of select(0), wakeup, fiber ping-pong and
#    blocking selects, per build and selector, alternating between builds.
# 4. The selector microbenchmarks (benchmark/selector/all.rb), on the default build.
#
# --builds: the builds of the extension to compare in one run, e.g.
#   --builds=before=/work/baseline/io_event_uring.so,after=lib
# (default IO_EVENT_BENCH_BUILDS, else the one in lib/). --record stores the figures
# of phases 2 and 3 in benchmark/results.json and RESULTS.md, one column per label.
#
# Exits non-zero when a server does not start or answer, wrk fails, or a measurement
# fails. Every process it starts is stopped on the way out, also on Ctrl-C.

require "etc"
require_relative "http/keep_alive"
require_relative "http/per_request"
require_relative "counts/measure"
require_relative "counts/results"
require_relative "counts/targets"

module BenchmarkRun
  MICRO = File.join(ROOT, "benchmark/selector/all.rb")
  SETUP = File.join(ROOT, "benchmark/setup")
  SELECTOR_ORDER = %w[URing EPoll Select Blocking].freeze
  MICRO_TIMEOUT = 150

  Options = Struct.new(:close, :duration, :rounds, :selectors, :builds, :keep_alive, :per_request, :counts,
                       :callgrind, :micro, :record, keyword_init: true)

  module_function

  def parse(argv, env = ENV)
    builds = env["IO_EVENT_BENCH_BUILDS"].to_s
    options = Options.new(close: false, duration: 3, rounds: 2, selectors: nil,
                          builds: builds.empty? ? "current=lib" : builds, keep_alive: true, per_request: true,
                          counts: true, callgrind: true, micro: true, record: false)
    argv.each do |argument|
      case argument
      when "--close" then options.close = true
      when /\A--duration=(\d+)\z/ then options.duration = Integer(Regexp.last_match(1), 10)
      when /\A--rounds=(\d+)\z/ then options.rounds = Integer(Regexp.last_match(1), 10)
      when /\A--selectors=(.+)\z/ then options.selectors = Regexp.last_match(1).split(",").map(&:strip)
      when /\A--builds=(.+)\z/ then options.builds = Regexp.last_match(1)
      when "--no-http" then options.keep_alive = options.per_request = false
      when "--no-keep-alive" then options.keep_alive = false
      when "--no-per-request" then options.per_request = false
      when "--no-counts" then options.counts = false
      when "--no-callgrind" then options.callgrind = false
      when "--no-micro" then options.micro = false
      when "--record" then options.record = true
      else raise ArgumentError, "unknown argument #{argument}"
      end
    end
    raise ArgumentError, "--duration must be at least 1" if options.duration < 1
    raise ArgumentError, "--rounds must be at least 1" if options.rounds < 1

    options
  end

  # wrk for the HTTP parts, strace for the counts: benchmark/setup installs whatever is
  # missing (valgrind is optional: without it there are no instruction counts).
  def ensure_tools(options)
    needed = []
    needed << "wrk" if options.keep_alive || options.per_request
    needed << "strace" if options.micro || options.counts
    return if needed.all? { |tool| which(tool) }

    puts "installing benchmark tools (benchmark/setup) ..."
    system("bash", SETUP) or warn "benchmark/setup failed"
    if (options.keep_alive || options.per_request) && !which("wrk")
      raise Failure, "wrk is not installed and benchmark/setup could not install it"
    end

    warn "strace is missing: no syscall counts" unless which("strace")
  end

  # -- microbenchmarks ---------------------------------------------------------

  # Streams the child's output through and returns [ok, its target lines].
  def micro
    puts
    reader, writer = IO.pipe
    pid = Children.spawn(RbConfig.ruby, MICRO, out: writer, err: [:child, :out])
    writer.close
    targets = []
    deadline = now + MICRO_TIMEOUT
    buffer = read_until_eof(reader, MICRO_TIMEOUT) do |chunk|
      $stdout.write(chunk)
      $stdout.flush
    end
    buffer.each_line { |l| targets << l.strip if l.start_with?("target:") }
    status = Children.wait(pid, [deadline - now, 1].max) || Children.stop(pid, 2)
    ok = status&.success? && (deadline - now).positive?
    puts "microbenchmarks FAILED (#{status.inspect})" unless ok
    [ok, targets]
  ensure
    reader&.close
  end

  # -- counts (and the per-request HTTP figures) ---------------------------------

  def counts(options, builds, selectors_of, figures)
    puts
    puts "Counts that do not drift, per build and selector (benchmark/counts/measure.rb): strace -f -c" \
         "#{options.callgrind && BenchTools.valgrind? ? ', callgrind' : ' (no valgrind: no instruction counts)'}" \
         ", then ns per operation (best of #{options.rounds} alternating rounds)"
    $stdout.flush
    selectors = (options.selectors || BenchCounts::SELECTORS) & BenchCounts::SELECTORS
    run_options = BenchCounts::Options.new(builds: builds, selectors: selectors, strace: true,
                                           callgrind: options.callgrind, timing: true, rounds: options.rounds,
                                           log: ->(line) { puts line; $stdout.flush })
    measured, failures = BenchCounts.measure(run_options)
    measured.each { |label, by_selector| by_selector.each { |s, values| figures[label][s].merge!(values) } }
    failures
  end

  def selectors_of(options, builds)
    builds.to_h do |build|
      names = BenchCounts::SELECTORS & BenchCounts.available(build)
      names &= options.selectors if options.selectors
      [build.label, names]
    end
  end

  # -- main --------------------------------------------------------------------

  def main(argv)
    options = parse(argv)
    ensure_tools(options)
    started = now
    builds = BenchCounts.prepare_builds(BenchCounts.parse_builds(options.builds))
    default_names = SELECTOR_ORDER & (BenchCounts.available(builds.last) + ["Blocking"])
    if options.selectors
      unknown = options.selectors - default_names
      raise Failure, "not available here: #{unknown.join(', ')} (available: #{default_names.join(', ')})" if unknown.any?

      default_names &= options.selectors
    end
    puts "rake bench: ruby #{RUBY_VERSION}, linux #{BenchResults.kernel}, #{BenchResults.machine}; " \
         "selectors: #{default_names.join(', ')}; builds: " \
         "#{builds.map { |b| "#{b.label}=#{b.source} (sha256 #{b.sha256}, #{b.mtime.utc.strftime('%F %T')})" }.join(', ')}"
    puts

    failures = []
    targets = []
    figures = Hash.new { |h, k| h[k] = Hash.new { |hh, kk| hh[kk] = {} } }
    if options.keep_alive
      results, http_failures = keep_alive(options, default_names)
      failures.concat(http_failures)
      keep_alive_table(results, options) if results.any?
      targets << keep_alive_target(results)
      puts
    end
    per_selector = selectors_of(options, builds)
    if options.per_request
      measured, http_failures = per_request(options, builds, per_selector)
      failures.concat(http_failures)
      measured.each { |label, by_selector| by_selector.each { |s, values| figures[label][s].merge!(values) } }
    end
    failures.concat(counts(options, builds, per_selector, figures)) if options.counts
    if figures.any?
      puts
      puts "Figures per build and selector (the rows of issue 11; recorded ones: benchmark/RESULTS.md)"
      puts BenchResults.text_table(figures.transform_values { |by_selector| by_selector.to_a.to_h })
      targets.concat(BenchTargets.lines(figures, BenchResults.checked_build(builds).label))
      recorded = BenchResults.load
      if recorded["check_against"] && options.counts
        puts
        puts "Compared with the recorded figures (what `rake bench:check` does; information here):"
        BenchResults.report_check(recorded, BenchResults.checked_figures(figures, builds))
      end
      if options.record
        BenchResults.save(BenchResults.record(BenchResults.load, figures, builds))
        puts "recorded in #{BenchResults::JSON_PATH} and #{BenchResults::MARKDOWN_PATH}"
      end
    end
    if options.micro
      ok, micro_targets = micro
      failures << "microbenchmarks failed" unless ok
      targets.concat(micro_targets)
    end

    targets.compact!
    if targets.any?
      puts
      puts "Targets (informational, not assertions):"
      targets.each { |t| puts "  #{t.delete_prefix('target: ')}" }
    end
    puts
    puts format("total %.0fs", now - started)
    if failures.any?
      puts "FAILURES:"
      failures.each { |f| puts "  #{f}" }
      return 1
    end
    0
  rescue ArgumentError => error
    warn "run.rb: #{error.message}"
    64
  rescue Failure, BenchTools::Failure => error
    warn "run.rb: #{error.message}"
    1
  rescue Interrupt
    warn "\nrun.rb: interrupted; stopping everything it started"
    130
  ensure
    Children.stop_all
  end
end

exit(BenchmarkRun.main(ARGV)) if $PROGRAM_NAME == __FILE__
