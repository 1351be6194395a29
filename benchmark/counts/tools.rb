# frozen_string_literal: true

# Running a command under strace or callgrind and reading what they counted.
#
# Both give counts that do not drift from run to run the way timings do on a shared
# VM: system calls (strace -f -c: every thread of the process, forks followed) and
# user-space instructions (valgrind --tool=callgrind, split by the object file the
# instruction belongs to: our extension, libc, libruby, the rest).

require "open3"
require "tmpdir"

module BenchTools
  module_function

  def which(name)
    ENV.fetch("PATH", "").split(File::PATH_SEPARATOR).map { |dir| File.join(dir, name) }
       .find { |path| File.file?(path) && File.executable?(path) }
  end

  def strace?
    return @strace if defined?(@strace)

    @strace = !which("strace").nil? &&
              system("strace", "-f", "-c", "-o", File::NULL, "true", out: File::NULL, err: File::NULL)
  end

  def valgrind?
    return @valgrind if defined?(@valgrind)

    @valgrind = !which("valgrind").nil? &&
                system("valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", "true",
                       out: File::NULL, err: File::NULL)
  end

  class Failure < StandardError; end

  # No single measured run takes this long unless a selector lost a wake-up.
  TIMEOUT = 300

  # Runs +command+ (with +env+) and returns its stdout; raises Failure if it fails or
  # runs for more than TIMEOUT seconds (coreutils' timeout kills it).
  def run(env, command, what)
    command = ["timeout", "-s", "KILL", TIMEOUT.to_s, *command] if which("timeout")
    stdout, stderr, status = Open3.capture3(env, *command)
    if status.signaled? || status.exitstatus == 137
      raise Failure, "#{what} did not finish within #{TIMEOUT}s (#{status})"
    end
    raise Failure, "#{what} failed (#{status}): #{telling(stderr)}" unless status.success?

    stdout
  end

  # The lines of a failed child's stderr that say what went wrong.
  def telling(stderr)
    lines = stderr.lines.map(&:strip).reject(&:empty?)
    (lines.grep(/Error|\[BUG\]|error/).first(2) + lines.last(1)).uniq.join(" | ")[0, 600]
  end

  # [{syscall => calls}, stdout] of +command+ under `strace -f -c`.
  def strace(env, command)
    Dir.mktmpdir("bench-strace") do |dir|
      file = File.join(dir, "strace.txt")
      stdout = run(env, ["strace", "-f", "-c", "-o", file, *command], "strace #{command.last(3).join(' ')}")
      [parse_strace(File.read(file)), stdout]
    end
  end

  # strace -c lines: "% time  seconds  usecs/call  calls  [errors]  syscall".
  def parse_strace(text)
    counts = {}
    text.each_line do |line|
      fields = line.split
      next unless fields.size >= 5 && fields[0].match?(/\A[\d.]+\z/) && fields[3].match?(/\A\d+\z/)
      next if fields.last == "total"

      counts[fields.last] = Integer(fields[3], 10)
    end
    counts
  end

  # [costs, stdout] of +command+ under callgrind; see #parse_callgrind for costs.
  def callgrind(env, command)
    Dir.mktmpdir("bench-callgrind") do |dir|
      file = File.join(dir, "callgrind.out")
      stdout = run(env, ["valgrind", "--tool=callgrind", "--callgrind-out-file=#{file}", *command],
                   "callgrind #{command.last(3).join(' ')}")
      [parse_callgrind(File.read(file)), stdout]
    end
  end

  # Which group an object file's instructions count in.
  def group(object)
    case object
    when %r{/io_event_uring\.so\z} then :extension
    when %r{/libc\.so} then :libc
    when %r{/libruby} then :ruby
    else :other
    end
  end

  # Self cost (instructions executed in each object file, not counting what it called)
  # summed per group: { total:, extension:, libc:, ruby:, other: }.
  #
  # The callgrind format: "ob=" names the object of the functions that follow,
  # "fn=" a function; lines of numbers are "position cost"; a "calls=" line says the
  # next cost line is the inclusive cost of a call, which is not self cost. Names may be
  # compressed as "(id) name" the first time and "(id)" after.
  def parse_callgrind(text)
    names = {}
    costs = Hash.new(0)
    object = nil
    skip_next = false
    total = nil
    text.each_line do |line|
      case line
      when /\Aob=(.*)/
        object = expand(names, Regexp.last_match(1).strip)
      when /\Acob=(.*)/
        # Only defines a name (objects share one table of compressed names).
        expand(names, Regexp.last_match(1).strip)
      when /\Acalls=/
        skip_next = true
      when /\A[+\-*\d]/
        if skip_next
          skip_next = false
          next
        end
        cost = line.split[1]
        costs[group(object.to_s)] += Integer(cost, 10) if cost
      when /\Asummary:\s*(\d+)/, /\Atotals:\s*(\d+)/
        total = Integer(Regexp.last_match(1), 10)
      end
    end
    sum = costs.values.sum
    raise Failure, "callgrind output: self costs #{sum} do not add up to the total #{total}" if total && total != sum

    { total: sum, extension: costs[:extension], libc: costs[:libc], ruby: costs[:ruby], other: costs[:other] }
  end

  def expand(names, text)
    if (match = text.match(/\A\((\d+)\)\s*(.*)\z/))
      id, name = match.captures
      name.empty? ? names.fetch(id, "?") : (names[id] = name)
    else
      text
    end
  end
end
