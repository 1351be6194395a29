#!/usr/bin/env ruby
# frozen_string_literal: true

# The counts that do not drift (system calls, futex calls and native threads, and
# user-space instructions when valgrind is installed) per selector and build; see
# benchmark/counts/measure.rb for what each figure is and benchmark/RESULTS.md for the
# recorded ones.
#
#   ruby benchmark/counts.rb [--check] [--record] [--no-callgrind] [--timing]
#                            [--builds=LABEL=PATH,...] [--selectors=URing,EPoll,Select]
#
# --builds    the builds of io_event_uring.so to measure, alternating between them:
#             PATH is a .so file, or "lib" for the one built in this checkout. Default:
#             IO_EVENT_BENCH_BUILDS, else "current=lib" (or IO_EVENT_BENCH_SO if set).
# --check     compare the build in lib/ (else the last build) with the
#             "check_against" column of benchmark/results.json; exit 1 when a count
#             is over its margin.
# --record    store the figures in benchmark/results.json (one column per build label)
#             and the table in benchmark/RESULTS.md.
# --no-callgrind  strace counts and thread counts only (what `rake bench:counts` does).
# --timing    also ns per call and round trips/s (drift; never checked).

require_relative "counts/measure"
require_relative "counts/results"

module BenchCountsMain
  module_function

  def parse(argv, env)
    default = env["IO_EVENT_BENCH_BUILDS"]
    default = "current=#{env['IO_EVENT_BENCH_SO']}" if (default.nil? || default.empty?) && env["IO_EVENT_BENCH_SO"].to_s != ""
    options = { builds: default.to_s.empty? ? "current=lib" : default, check: false, record: false,
                callgrind: true, timing: false, selectors: BenchCounts::SELECTORS, rounds: 3 }
    argv.each do |argument|
      case argument
      when "--check" then options[:check] = true
      when "--record" then options[:record] = true
      when "--no-callgrind" then options[:callgrind] = false
      when "--timing" then options[:timing] = true
      when /\A--builds=(.+)\z/ then options[:builds] = Regexp.last_match(1)
      when /\A--selectors=(.+)\z/ then options[:selectors] = Regexp.last_match(1).split(",").map(&:strip)
      when /\A--rounds=(\d+)\z/ then options[:rounds] = Integer(Regexp.last_match(1), 10)
      else raise ArgumentError, "unknown argument #{argument}"
      end
    end
    options
  end

  def main(argv, env = ENV)
    started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    args = parse(argv, env)
    builds = BenchCounts.prepare_builds(BenchCounts.parse_builds(args[:builds]))
    unless BenchTools.strace?
      warn "counts.rb: strace is not installed (bin/setup installs it)"
      return 1
    end
    callgrind = args[:callgrind] && BenchTools.valgrind?
    puts "counts: ruby #{RUBY_VERSION}, linux #{BenchResults.kernel}, #{BenchResults.machine}; builds: " \
         "#{builds.map { |b| "#{b.label}=#{b.source} (sha256 #{b.sha256})" }.join(', ')}; strace" \
         "#{callgrind ? ' + callgrind' : ''}#{args[:timing] ? ' + timing' : ''}"
    puts "(valgrind is not installed: no instruction counts)" if args[:callgrind] && !callgrind
    $stdout.flush
    options = BenchCounts::Options.new(builds: builds, selectors: args[:selectors], strace: true,
                                       callgrind: callgrind, timing: args[:timing], rounds: args[:rounds],
                                       log: ->(line) { puts line; $stdout.flush })
    figures, failures = BenchCounts.measure(options)
    puts
    puts BenchResults.text_table(figures)
    status = failures.empty? ? 0 : 1
    failures.each { |failure| puts "FAILED: #{failure}" }

    data = BenchResults.load
    status = [status, check(data, BenchResults.checked_figures(figures, builds))].max if args[:check]
    if args[:record]
      BenchResults.save(BenchResults.record(data, figures, builds))
      puts "recorded in #{BenchResults::JSON_PATH} and #{BenchResults::MARKDOWN_PATH}"
    end
    puts format("counts: %.0fs", Process.clock_gettime(Process::CLOCK_MONOTONIC) - started)
    status
  rescue ArgumentError => error
    warn "counts.rb: #{error.message}"
    64
  end

  def check(data, measured)
    BenchResults.report_check(data, measured) ? 0 : 1
  end
end

exit(BenchCountsMain.main(ARGV)) if $PROGRAM_NAME == __FILE__
