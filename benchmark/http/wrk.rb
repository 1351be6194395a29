# frozen_string_literal: true

# Running wrk against a local server and reading its report.

require_relative "children"

module BenchmarkRun
  UNITS = { "us" => 1e-3, "ms" => 1.0, "s" => 1e3, "m" => 60e3 }.freeze

  module_function

  # +close+: every request asks for "Connection: close", so wrk opens one connection
  # per request (connect, request, answer, close).
  def run_wrk(port, connections, duration, cpu, close: false)
    headers = close ? ["-H", "Connection: close"] : []
    command = pinned(cpu, ["wrk", "-t1", "-c#{connections}", "-d#{duration}s", "--latency", "--timeout", "2s",
                           *headers, "http://127.0.0.1:#{port}/"])
    reader, writer = IO.pipe
    pid = Children.spawn(*command, out: writer, err: [:child, :out])
    writer.close
    deadline = now + duration + 20
    output = read_until_eof(reader, duration + 20)
    status = Children.wait(pid, [deadline - now, 1].max)
    unless status
      Children.stop(pid, 1)
      raise Failure, "wrk did not finish in time"
    end
    raise Failure, "wrk failed (#{status}): #{output.strip[0, 1000]}" unless status.success?

    parse_wrk(output)
  ensure
    reader&.close
  end

  def parse_wrk(output)
    rps = output[/^Requests\/sec:\s+([\d.]+)/, 1]
    total = output[/^\s*(\d+) requests in /, 1]
    p99 = output.match(/^\s+99(?:\.0+)?%\s+([\d.]+)(us|ms|s|m)\b/)
    raise Failure, "could not read wrk output:\n#{output}" unless rps && total

    errors = output.match(/Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/)
    non2xx = output[/Non-2xx or 3xx responses: (\d+)/, 1]
    {
      rps: Float(rps),
      requests: Integer(total, 10),
      p99_ms: p99 && Float(p99[1]) * UNITS.fetch(p99[2]),
      errors: (errors ? errors.captures.sum { |n| Integer(n, 10) } : 0) + (non2xx ? Integer(non2xx, 10) : 0)
    }
  end

  def format_number(value, digits = 0)
    return "-" if value.nil?

    text = format("%.#{digits}f", value)
    whole, fraction = text.split(".")
    whole = whole.reverse.scan(/\d{1,3}-?/).join(",").reverse
    fraction ? "#{whole}.#{fraction}" : whole
  end

  # A plain-text table; columns after the first are right-aligned.
  def print_table(headers, rows)
    widths = headers.each_index.map { |i| ([headers[i]] + rows.map { |row| row[i].to_s }).map(&:length).max }
    line = lambda do |cells|
      cells.each_with_index.map { |c, i| i.zero? ? c.to_s.ljust(widths[i]) : c.to_s.rjust(widths[i]) }.join("  ")
    end
    puts line.call(headers)
    puts line.call(widths.map { |w| "-" * w })
    rows.each { |row| puts line.call(row) }
  end
end
