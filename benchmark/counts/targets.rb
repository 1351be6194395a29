# frozen_string_literal: true

# Issue 11's targets, as information lines under `rake bench` (never assertions).

module BenchTargets
  # [description, selectors, metric, limit]: met when the figure is at most the limit.
  LIMITS = [
    ["native threads after blocking selects", %w[URing EPoll], "blocking_select.threads", 1],
    ["futex calls per blocking select", %w[URing EPoll], "blocking_select.futex", 1],
    ["context switches per request (connection per request)", %w[URing EPoll], "http_close.context_switches", 0.3],
    ["instructions per request (connection per request)", %w[URing EPoll], "http_close.instructions", 20_000],
    ["extension instructions per request", %w[URing EPoll], "http_close.instructions_extension", 400],
    ["select(0) instructions per call incl. the loop", %w[URing], "select_zero.instructions", 450],
    ["select(0) system calls per call", %w[URing], "select_zero.syscalls", 0],
    ["wakeup (not blocked) instructions per call", %w[URing EPoll], "wakeup.instructions", 350],
    ["ping-pong system calls per round trip with io_wait", %w[EPoll], "ping_pong_wait.syscalls", 8],
    ["ping-pong system calls per round trip with io_read/io_write", %w[EPoll], "ping_pong_rw.syscalls", 12],
    ["ping-pong instructions per round trip, io_read/io_write", %w[URing EPoll], "ping_pong_rw.instructions", 10_000],
    ["ping-pong instructions per round trip, io_wait", %w[URing EPoll], "ping_pong_wait.instructions", 19_000]
  ].freeze

  module_function

  def verdict(met)
    met ? "met" : "NOT met"
  end

  # +figures+: { label => { selector => { metric => value } } }; +label+ names the
  # build under test (the one in lib/: `BenchResults.checked_build`, whatever the order
  # of the builds; by default the last), a label "before" (if measured in the same run)
  # the reference for the CPU-per-request ratio.
  def lines(figures, label = figures.keys.last)
    current = figures[label] || {}
    out = LIMITS.filter_map do |title, selectors, metric, limit|
      values = selectors.filter_map { |s| [s, current.dig(s, metric)] if current.dig(s, metric).is_a?(Numeric) }
      next if values.empty?

      shown = values.map { |s, v| "#{s} #{v.round(v.abs >= 100 ? 0 : 2)}" }.join(", ")
      # System calls per operation are a difference of two strace runs over N
      # operations: a stray call or two in one of them shows as a few hundredths.
      slack = metric.end_with?(".syscalls", ".futex") ? 0.05 : 0
      "target (issue 11): #{title} <= #{limit}: #{shown} (#{verdict(values.all? { |_, v| v <= limit + slack })})"
    end
    before = figures["before"]
    if before && label != "before"
      ratios = %w[URing EPoll].filter_map do |s|
        old = before.dig(s, "http_close.cpu_us")
        new = current.dig(s, "http_close.cpu_us")
        [s, old / new] if old && new&.positive?
      end
      unless ratios.empty?
        shown = ratios.map { |s, r| format("%s %.2fx", s, r) }.join(", ")
        out << "target (issue 11): server CPU per request >= 1.25x lower than before: #{shown} " \
               "(#{verdict(ratios.all? { |_, r| r >= 1.25 })})"
      end
    end
    out
  end
end
