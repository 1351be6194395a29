# frozen_string_literal: true

# Every selector microbenchmark, every selector available here, in one run:
#   select(0) with nothing pending (and the ready? floor, and syscalls per call),
#   cross-thread wakeup round trip, fiber ping-pong through pipes.
# Each table shows ratios against EPoll (Select when EPoll is missing), and the
# targets from issue 5 are printed under their table as information, never asserted.
#
#   ruby benchmark/selector/all.rb          (also run by `rake bench`)
#   IO_EVENT_BENCH_SELECTORS=URing,EPoll ruby benchmark/selector/all.rb

require_relative "select_zero"
require_relative "wakeup"
require_relative "ping_pong"
require "etc"

names = SelectorBench.selectors.map(&:first)
kernel = File.read("/proc/sys/kernel/osrelease").strip rescue "unknown" # rubocop:disable Style/RescueModifier
puts "Selector microbenchmarks: ruby #{RUBY_VERSION}, linux #{kernel}, #{Etc.nprocessors} CPUs, " \
     "selectors: #{names.join(', ')}"
puts

[SelectorBench::SelectZero, SelectorBench::Wakeup, SelectorBench::PingPong].each do |benchmark|
  puts benchmark.report(benchmark.run)
  puts
  $stdout.flush
end
