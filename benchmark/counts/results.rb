# frozen_string_literal: true

# benchmark/results.json (the recorded figures, machine-readable) and the table in
# benchmark/RESULTS.md made from it; and the regression check against them.
#
# results.json:
#   "check_against": the column that `rake bench:check` compares with (the build
#                    in lib/ when it was among those measured)
#   "margins": { rule => { "absolute": a, "relative": r } }: a count regresses when
#              measured > max(recorded + a, recorded * (1 + r)); written from
#              DEFAULT_MARGINS below at every --record
#   "columns": { label => { "measured", "so", "machine", "ruby", "kernel",
#                           "figures" => { selector => { "workload.metric" => value } } } }

require "etc"
require "json"
require "time"
require_relative "../build"

module BenchResults
  DIR = File.expand_path("..", __dir__)
  JSON_PATH = File.join(DIR, "results.json")
  MARKDOWN_PATH = File.join(DIR, "RESULTS.md")
  TABLE_BEGIN = "<!-- table: made by benchmark/counts.rb --record from results.json -->"
  TABLE_END = "<!-- end of table -->"
  SELECTORS = %w[URing EPoll Select].freeze

  DEFAULT_MARGINS = {
    "syscalls" => { "absolute" => 0.5, "relative" => 0.10 },
    "blocking_select" => { "absolute" => 0.5, "relative" => 0.25 },
    "threads" => { "absolute" => 0, "relative" => 0 },
    "instructions" => { "absolute" => 20, "relative" => 0.10 }
  }.freeze

  # [row title, [metric, digits], ...]: several metrics make "a / b / c" cells.
  ROWS = [
    ["HTTP server, connection per request, wrk -c8: requests/s", ["http_close.rps", 0]],
    ["same, server CPU µs per request", ["http_close.cpu_us", 1]],
    ["same, context switches per request", ["http_close.context_switches", 2]],
    ["same, native threads of the server", ["http_close.threads", 0]],
    ["same, user-space instructions per request (all / extension / libc)",
     ["http_close.instructions", 0], ["http_close.instructions_extension", 0], ["http_close.instructions_libc", 0]],
    ["`select(0)` with nothing pending: ns per call", ["select_zero.ns", 1]],
    ["same, instructions per call incl. the `while` loop (all / extension)",
     ["select_zero.instructions", 0], ["select_zero.instructions_extension", 0]],
    ["same, system calls per call", ["select_zero.syscalls", 2]],
    ["`wakeup` while not blocked: ns / instructions per call", ["wakeup.ns", 1], ["wakeup.instructions", 0]],
    ["fiber ping-pong, socketpair, 1 B: round trips/s, `io_read`+`io_write` / `io_wait`",
     ["ping_pong_rw.per_second", 0], ["ping_pong_wait.per_second", 0]],
    ["same, system calls per round trip: `io_wait` / `io_read`+`io_write`",
     ["ping_pong_wait.syscalls", 2], ["ping_pong_rw.syscalls", 2]],
    ["same, instructions per round trip: `io_read`+`io_write` / `io_wait`",
     ["ping_pong_rw.instructions", 0], ["ping_pong_wait.instructions", 0]],
    ["200 blocking `select(0.0005)`: `futex` calls per select / native threads after",
     ["blocking_select.futex", 2], ["blocking_select.threads", 0]],
    ["same, system calls per blocking select", ["blocking_select.syscalls", 2]]
  ].freeze

  module_function

  def load(path = JSON_PATH)
    return { "check_against" => nil, "margins" => DEFAULT_MARGINS, "columns" => {} } unless File.exist?(path)

    JSON.parse(File.read(path))
  end

  def machine
    model = File.foreach("/proc/cpuinfo").find { |l| l.start_with?("model name") }&.split(":", 2)&.last&.strip
    "#{Etc.nprocessors} CPUs#{model ? " (#{model})" : ''}"
  rescue SystemCallError
    "#{Etc.nprocessors} CPUs"
  end

  def kernel
    File.read("/proc/sys/kernel/osrelease").strip
  rescue SystemCallError
    "unknown"
  end

  # Stores the figures of +builds+ ({ label => figures }) as columns named by their
  # labels, keeping recorded metrics that this run did not measure.
  def record(data, figures, builds)
    builds.each do |build|
      column = data["columns"][build.label] ||= {}
      old = column["figures"] || {}
      merged = SELECTORS.to_h { |s| [s, (old[s] || {}).merge(clean(figures.dig(build.label, s) || {}))] }
      column.merge!("measured" => Time.now.utc.iso8601, "so" => "#{File.basename(build.source)} sha256 #{build.sha256}",
                    "so_mtime" => build.mtime.utc.iso8601, "machine" => machine,
                    "ruby" => RUBY_DESCRIPTION, "kernel" => kernel,
                    "figures" => merged.reject { |_, v| v.empty? })
    end
    data["check_against"] = checked_build(builds).label
    data["margins"] = DEFAULT_MARGINS
    data
  end

  # The column `rake bench:check` compares with: the build in lib/ when it was
  # measured (other builds, such as an older one or the C io-event, are for
  # comparison only), else the last build given.
  def checked_build(builds)
    current = File.realpath(BenchBuild.current_so) if File.exist?(BenchBuild.current_so)
    builds.find { |build| File.exist?(build.source) && File.realpath(build.source) == current } || builds.last
  end

  # The measured figures that `check` compares with the `check_against` column:
  # those of the same build (`checked_build`).
  def checked_figures(figures, builds)
    figures[checked_build(builds).label]
  end

  def clean(figures)
    figures.to_h { |k, v| [k, v.is_a?(Float) ? v.round(v.abs >= 100 ? 0 : 3) : v] }
  end

  def save(data)
    File.write(JSON_PATH, "#{JSON.pretty_generate(data)}\n")
    return unless File.exist?(MARKDOWN_PATH)

    text = File.read(MARKDOWN_PATH)
    first = text.index(TABLE_BEGIN)
    last = text.index(TABLE_END)
    return unless first && last

    table = markdown(data)
    File.write(MARKDOWN_PATH, "#{text[0, first + TABLE_BEGIN.size]}\n#{table}\n#{text[last..]}")
  end

  # -- tables ------------------------------------------------------------------

  def cell(by_metric, metrics)
    return "-" unless by_metric

    values = metrics.map do |metric, digits|
      value = by_metric[metric]
      value.is_a?(Numeric) ? number(value, digits) : "-"
    end
    values.all?("-") ? "-" : values.join(" / ")
  end

  def number(value, digits)
    value = 0 if value.abs < 0.5 / (10**digits)
    text = format("%.#{digits}f", value)
    whole, fraction = text.split(".")
    whole = whole.reverse.scan(/\d{1,3}-?/).join(",").reverse
    fraction ? "#{whole}.#{fraction}" : whole
  end

  # [[selector, label], ...] for the columns that have figures, selector-major.
  def column_keys(columns)
    SELECTORS.flat_map do |selector|
      columns.filter_map { |label, column| [selector, label] if column.dig("figures", selector) }
    end
  end

  def rows(columns)
    keys = column_keys(columns)
    headers = ["measure"] + keys.map { |selector, label| "#{selector} #{label}" }
    body = ROWS.map do |title, *metrics|
      [title] + keys.map { |selector, label| cell(columns.dig(label, "figures", selector), metrics) }
    end
    [headers, body]
  end

  def markdown(data)
    headers, body = rows(data["columns"])
    lines = ["| #{headers.join(' | ')} |", "|#{' --- |' * headers.size}"]
    body.each { |row| lines << "| #{row.join(' | ')} |" }
    notes = data["columns"].map do |label, c|
      "- **#{label}**: measured #{c['measured']}; #{c['so']} (built #{c['so_mtime']}); #{c['ruby']}; " \
        "linux #{c['kernel']}; #{c['machine']}"
    end
    [lines.join("\n"), "", *notes].join("\n")
  end

  # Plain-text table for the terminal, from { label => { selector => figures } }.
  def text_table(figures)
    columns = figures.transform_values { |by_selector| { "figures" => by_selector } }
    headers, body = rows(columns)
    widths = headers.each_index.map { |i| ([headers[i]] + body.map { |row| row[i] }).map(&:length).max }
    line = ->(cells) { cells.each_with_index.map { |c, i| i.zero? ? c.ljust(widths[i]) : c.rjust(widths[i]) }.join("  ") }
    [line.call(headers), line.call(widths.map { |w| "-" * w }), *body.map(&line)].join("\n")
  end

  # -- the check -----------------------------------------------------------------

  def rule_for(metric)
    return "blocking_select" if metric.start_with?("blocking_select.") && metric.end_with?(".syscalls", ".futex")
    return "syscalls" if metric.end_with?(".syscalls")
    return "threads" if metric.end_with?(".threads") && !metric.start_with?("http_close.")
    return "instructions" if metric.end_with?(".instructions", ".instructions_extension")

    nil
  end

  # [[selector, metric, recorded, measured, limit, ok], ...] for every checked metric
  # present in both.
  def check(data, measured)
    column = data["columns"][data["check_against"]] or raise ArgumentError, "results.json has no column to check against"
    margins = data["margins"] || DEFAULT_MARGINS
    SELECTORS.flat_map do |selector|
      recorded = column.dig("figures", selector) || {}
      (measured[selector] || {}).filter_map do |metric, value|
        rule = rule_for(metric)
        next unless rule && recorded[metric].is_a?(Numeric) && value.is_a?(Numeric)

        margin = margins.fetch(rule)
        limit = [recorded[metric] + margin["absolute"], recorded[metric] * (1 + margin["relative"])].max
        [selector, metric, recorded[metric], value, limit, value <= limit + 1e-9]
      end
    end
  end

  # Prints one line per checked figure; returns false when one regressed.
  def report_check(data, measured)
    rows = check(data, measured || {})
    puts
    puts "check against the \"#{data['check_against']}\" column of benchmark/results.json " \
         "(fails when measured > max(recorded + absolute, recorded x (1 + relative)); margins there):"
    rows.each do |selector, metric, recorded, value, limit, ok|
      recorded, value = [recorded, value].map { |v| v.abs < 0.005 ? 0.0 : v }
      puts format("  %-4s %-7s %-40s recorded %10.2f  measured %10.2f  limit %10.2f",
                  ok ? "ok" : "FAIL", selector, metric, recorded, value, limit)
    end
    regressed = rows.reject(&:last)
    puts "check: nothing to compare (no recorded figures)" if rows.empty?
    puts(regressed.empty? ? "check: #{rows.size} figures within their margins" :
         "check: #{regressed.size} of #{rows.size} figures REGRESSED")
    regressed.empty?
  end
end
