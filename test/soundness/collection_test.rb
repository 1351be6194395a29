# frozen_string_literal: true

# Issue 9, "suspected": a selector garbage-collected with operations in
# flight, on the thread that owns it, in the same GC cycle as everything its
# slots hold (parked fibers, IOs, buffers). Its free must drain the kernel's
# operations before anything they use is reused: the buffers' memory is
# refilled with canaries and then the pipes are written to; no canary may
# change, nothing may crash, no descriptor may stay open, and the children
# the collected process waits were for keep their exit status.

require_relative "support"

module SoundnessCollection
  include Soundness::Helpers

  PIPES = 6

  # Everything made here is unreachable when it returns (nothing but the
  # selector refers to the fibers; nothing refers to the selector).
  def abandon_selector_with_operations(kind, pipes, children, full)
    selector = new_selector(Fiber.current)
    pipes.each_with_index do |(input, _), index|
      Fiber.new do
        if kind == :reads
          selector.io_read(Fiber.current, input, IO::Buffer.new(64), 8, index % 4)
        else
          selector.io_wait(Fiber.current, input, IO::READABLE)
        end
      end.transfer
    end
    if kind == :reads
      secret = IO::Buffer.new(64)
      secret.set_string("S" * 64)
      Fiber.new { selector.io_write(Fiber.current, full, secret, 64) }.transfer
    end
    children.each do |pid|
      Fiber.new { selector.process_wait(Fiber.current, pid, 0) }.transfer
    end
    selector.select(0.001)
    nil
  end

  def scrub_stack
    (1..300).reduce([]) { |nested, _| [nested] }.inspect.size
  end

  def compact
    GC.compact if GC.respond_to?(:compact)
  rescue NotImplementedError
    nil
  end

  # kind :waits (io_wait, process_wait: nothing lent) or :reads (io_read,
  # io_write: buffers lent to the kernel).
  [%i[waits gc], %i[reads gc], %i[reads compact]].each do |kind, how|
    define_method("test_selector_collected_with_#{kind}_in_flight_#{how}") do
      isolated(label: "selector collected with #{kind} in flight (#{how})") do
        GC.start
        fds = fd_list
        pipes = Array.new(PIPES) { IO.pipe }
        full_in, full_out = IO.pipe
        begin
          loop { full_out.write_nonblock("x" * 65_536) }
        rescue IO::WaitWritable
          nil
        end
        children = Array.new(2) { Process.spawn("sleep", "0.2") }
        before = ObjectSpace.each_object(selector_class).count
        abandon_selector_with_operations(kind, pipes, children, full_out)
        scrub_stack
        step "abandoned; collecting"
        _, elapsed = timed do
          compact if how == :compact
          4.times { GC.start(full_mark: true, immediate_sweep: true) }
        end
        after = ObjectSpace.each_object(selector_class).count
        step "collected in #{elapsed.round(3)}s (#{before} -> #{after} selectors)"
        canaries = Array.new(4096) { "C" * 63 }
        pipes.each { |_, output| output.write("CORRUPT!" * 2) }
        full_in.read_nonblock(1 << 20) rescue nil # rubocop:disable Style/RescueModifier
        sleep 0.05
        GC.start
        damaged = canaries.reject { |canary| canary == "C" * 63 }
        assert_empty damaged.map { |canary| canary[0, 24] }, "the kernel wrote into freed memory after the selector was collected"
        assert_operator elapsed, :<, 1.0, "collecting the selector took #{elapsed.round(2)}s"
        if kind == :reads && selector_class.name.end_with?("URing")
          # By design (DESIGN.md, "pins"): memory lent to the kernel pins its
          # fiber, whose stack refers to the selector, so a URing selector
          # abandoned with reads or writes in flight is kept, ring and all,
          # rather than risk the kernel writing into a freed buffer.
          assert_operator after, :>, before - 1, "the abandoned selector with reads in flight is kept"
        else
          # Ruby marks the machine stack conservatively: a stale word left by
          # the calls above can keep the selector one more cycle. A few more
          # scrubbed cycles, then it must be gone.
          3.times do
            break if after <= before

            scrub_stack
            GC.start(full_mark: true, immediate_sweep: true)
            after = ObjectSpace.each_object(selector_class).count
          end
          assert_operator after, :<=, before,
                          "the abandoned selector was never collected: its ring, eventfd and fibers leak"
        end
        statuses = children.map { |pid| Process.wait2(pid)[1] }
        assert statuses.all? { |status| status.exitstatus == 0 }, "a collected process_wait consumed a child's status: #{statuses.inspect}"
        pipes.each { |pair| pair.each(&:close) }
        full_in.close
        full_out.close
        GC.start
        left = describe_fds(fd_list - fds)
        if kind == :reads && selector_class.name.end_with?("URing")
          # The kept selector keeps its ring, its eventfd and the pidfds of its
          # process waits (legacy rings poll pidfds), nothing else.
          assert_empty left.grep_v(/anon_inode:\[(io_uring|eventfd|pidfd)\]/), "descriptors left open besides the kept selector's"
        else
          assert_empty left, "descriptors left open after the selector was collected"
        end
        true
      end
    end
  end
end

SelectorVariants.define("SoundnessCollection", SoundnessCollection, variants: SelectorVariants::PLAIN)
