# frozen_string_literal: true

# Cross-thread wakeup round trip: the loop thread blocks in select(nil); another thread
# calls wakeup. Measured from just before the wakeup call that landed (answered true) to
# just after select returned on the loop thread, so it includes the kernel wake-up and
# the GVL hand-over back to the loop thread, as a real scheduler pays. Reports the median
# and p99 in microseconds.
#
# Baseline row: a thread blocked in IO.select on a pipe, woken by a one-byte write from
# another thread (blocking Ruby). The write may come before the loop thread has blocked,
# so this row is a lower bound.
#
#   ruby benchmark/selector/wakeup.rb

require_relative "support"

module SelectorBench
  module Wakeup
    CHUNKS = 4
    ROUNDS = 1_250
    WARMUP = 50
    # Stop a chunk early when a selector is this slow, so a full run stays bounded.
    SECONDS = 0.75
    # How long the waker retries a wakeup that answers false before it gives up and
    # raises Stuck into the loop thread (the selector's wakeup is then broken).
    STUCK = 2.0
    BASELINE_NAME = "IO.select + pipe (threads)"

    module_function

    # Raised into the loop thread when wakeup never lands, so select(nil) cannot hang.
    class Stuck < StandardError; end

    # Returns { samples: [us, ...], early: n } or { error: "..." }. "early" counts
    # select(nil) calls that returned before this round's wakeup had landed (a wake-up
    # left over from an earlier round, for instance); the round then selects again.
    def measure_selector(klass)
      selector = klass.new(Fiber.current)
      go = Thread::Queue.new
      # The waker sets the stamp under this lock in the same step as the wakeup call
      # that answered true, so the loop thread never sees one without the other.
      lock = Thread::Mutex.new
      stamp = nil
      loop_thread = Thread.current
      waker = Thread.new do
        while go.pop
          # wakeup answers false until the loop thread is really blocked; retry until
          # it lands, within bounds.
          give_up = SelectorBench.now + STUCK
          loop do
            landed = lock.synchronize do
              started = SelectorBench.now_ns
              stamp = started if selector.wakeup
            end
            break if landed

            if SelectorBench.now > give_up
              loop_thread.raise(Stuck, "wakeup did not answer true within #{STUCK}s")
              break
            end
            Thread.pass
          end
        end
      end

      samples = []
      early = 0
      deadline = SelectorBench.now + SECONDS
      (WARMUP + ROUNDS).times do |round|
        lock.synchronize { stamp = nil }
        go.push(true)
        loop do
          selector.select(nil)
          finished = SelectorBench.now_ns
          landed = lock.synchronize { stamp }
          if landed
            samples << (finished - landed) / 1000.0 if round >= WARMUP
            break
          end
          early += 1
          # Not woken by this round's wakeup: the waker is still trying, and lands once
          # this thread blocks again.
        end
        break if SelectorBench.now > deadline && samples.size >= 100
      end
      { samples: samples, early: early }
    rescue Stuck => error
      { error: error.message }
    ensure
      begin
        go&.push(false)
        waker&.join(STUCK + 1)
      rescue Stuck
        # The waker gave up while this thread was already leaving.
      end
      waker&.kill
      selector&.close
    end

    def measure_io_select
      reader, writer = IO.pipe
      go = Thread::Queue.new
      stamp = nil
      waker = Thread.new do
        while go.pop
          stamp = SelectorBench.now_ns
          writer.write_nonblock("x")
        end
      end
      samples = []
      deadline = SelectorBench.now + SECONDS
      readers = [reader]
      (WARMUP + ROUNDS).times do |round|
        stamp = nil
        go.push(true)
        IO.select(readers, nil, nil, STUCK * 2)
        finished = SelectorBench.now_ns
        reader.read_nonblock(16, exception: false)
        spin_until = SelectorBench.now + 1
        Thread.pass while stamp.nil? && SelectorBench.now < spin_until
        return { error: "IO.select was not woken" } if stamp.nil?

        samples << (finished - stamp) / 1000.0 if round >= WARMUP
        break if SelectorBench.now > deadline && samples.size >= 100
      end
      { samples: samples, early: 0 }
    ensure
      go&.push(false)
      waker&.join(1)
      waker&.kill
      reader&.close
      writer&.close
    end

    def summarize(samples)
      sorted = samples.sort
      {
        median_us: SelectorBench.percentile(sorted, 0.5),
        p99_us: SelectorBench.percentile(sorted, 0.99),
        rounds: sorted.size
      }
    end

    # Rounds are taken in chunks, alternating between selectors, so that each sees the
    # same background load; the samples of all chunks are summarized together.
    def run
      runners = SelectorBench.selectors.map do |name, klass|
        [name, -> { SelectorBench.isolated { measure_selector(klass) } }]
      end
      runners << [BASELINE_NAME, -> { SelectorBench.isolated { measure_io_select } }]
      samples = runners.to_h { |name, _| [name, []] }
      early = Hash.new(0)
      errors = {}
      CHUNKS.times do
        runners.each do |name, runner|
          next if errors[name]

          result = runner.call
          if result[:error]
            errors[name] = result
          else
            samples[name].concat(result[:samples])
            early[name] += result[:early]
          end
        end
      end
      runners.to_h do |name, _|
        [name, errors[name] || summarize(samples[name]).merge(early: early[name])]
      end
    end

    def report(results)
      base = SelectorBench.baseline_name(results.keys)
      base_median = base && results.dig(base, :median_us)
      rows = results.map do |name, result|
        next [name, "failed: #{result[:error]}", "", "", "", ""] if result[:error]

        [
          name,
          SelectorBench.number(result[:median_us], 1),
          SelectorBench.number(result[:p99_us], 1),
          result[:rounds].to_s,
          result[:early].to_s,
          SelectorBench.ratio(result[:median_us], base_median)
        ]
      end
      headers = ["selector", "median us", "p99 us", "rounds", "early returns", "vs #{base || '-'}"]
      text = SelectorBench.table("cross-thread wakeup round trip (other thread calls wakeup while select(nil) blocks)",
                                 headers, rows)
      uring = results["URing"]
      epoll = results["EPoll"]
      if uring && !uring[:error]
        ratio = epoll && !epoll[:error] ? uring[:median_us].fdiv(epoll[:median_us]) : nil
        text += "\ntarget: URing wakeup within 1.25x of EPoll (median): " \
                "#{ratio ? format('%.2fx', ratio) : 'no EPoll'} (#{SelectorBench.verdict(ratio && ratio <= 1.25)})"
      end
      text
    end
  end
end

puts SelectorBench::Wakeup.report(SelectorBench::Wakeup.run) if $PROGRAM_NAME == __FILE__
