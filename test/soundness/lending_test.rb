# frozen_string_literal: true

# The short lending path (`take_plain`/`give_back_plain`: a buffer
# found unlocked is locked by the call alone, with no table entry; calls that
# find it locked join the table and are handed the unlock) and of URing's
# "complete now" attempts (a write is tried with RWF_NOWAIT first; every
# length-0 attempt completes inside its enter).
#
# Lending: every interleaving of a plain lease (Locked), a joined lease and a
# general-path lease (a slice lends its root) on one buffer, from two fibers
# and from two threads with two selectors, must keep the buffer locked while
# any call still uses it and unlock it exactly when the last one is done; a
# buffer its owner locked is never unlocked by us. The first lend of a
# process asks Ruby `locked?` (Ruby code: a trap handler or a thread switch
# may run there); a call lending the same buffer from inside that question
# must not use it unlocked. The `locked?` hook below stands in for the trap
# handler, as first_use_test.rb's `const_get` hook stands in for a thread
# switch.
#
# Complete-now: semantics against io-event (a write on a full pipe waits; a
# file refusing RWF_NOWAIT (tmpfs) still gets its bytes at the right place;
# pwrite), and bounded bookkeeping for attempts that never go through select.

require_relative "support"

module SoundnessLending
  include Soundness::Helpers

  SIZE = 64
  CANARY = "C" * (SIZE - 1)

  # Starts a fiber reading 4 bytes into `buffer` at `offset`; it parks
  # (empty pipe). Returns [fiber, results-hash].
  def parked_read(selector, input, buffer, offset, results, key)
    fiber = Fiber.new do
      results[key] = selector.io_read(Fiber.current, input, buffer, 4, offset)
    rescue Exception => error # rubocop:disable Lint/RescueException
      results[key] = error
    end
    fiber.transfer
    assert fiber.alive?, "the #{key} read should park on an empty pipe"
    fiber
  end

  def finish(selector, output, fiber, data, what)
    output.write(data)
    assert drive_until(selector) { !fiber.alive? }, "#{what} never completed"
  end

  # --- the first lend's `locked?` question -----------------------------------

  def test_a_lend_from_inside_the_first_locked_question_keeps_the_buffer_locked
    name = selector_class.name.split("::").last
    script = <<~RUBY
      Warning[:experimental] = false
      selector = IO::Event::Selector.const_get(#{name.dump}).new(Fiber.current)
      r1, _w1 = IO.pipe
      r2, w2 = IO.pipe
      buffer = IO::Buffer.new(#{SIZE})
      # Stands in for a trap handler (or a thread switch) served inside the
      # method call the first lend of the process makes.
      $hook = nil
      class IO::Buffer
        alias_method :__review_locked?, :locked?
        def locked?
          if (hook = $hook)
            $hook = nil
            hook.call
          end
          __review_locked?
        end
      end
      results = {}
      inner = Fiber.new { results[:inner] = (selector.io_read(Fiber.current, r2, buffer, 4) rescue $!) }
      $hook = -> { inner.transfer }
      outer = Fiber.new { results[:outer] = (selector.io_read(Fiber.current, r1, buffer, 4) rescue $!) }
      outer.transfer
      in_flight = inner.alive?
      locked = buffer.locked?
      freed = begin
        buffer.free
        true
      rescue IO::Buffer::LockedError
        false
      end
      canaries = freed ? Array.new(512) { "C" * #{SIZE - 1} } : []
      w2.write("XXXX")
      deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 3
      selector.select(0.02) while inner.alive? && Process.clock_gettime(Process::CLOCK_MONOTONIC) < deadline
      damaged = canaries.count { |canary| canary != #{CANARY.dump} }
      report([in_flight, locked, freed, damaged])
      $soundness_channel.flush
      exit!(0)
    RUBY
    value, status, stderr = isolated_script(script, env: selector_variant.env, label: "lend inside the first locked?")
    refute_nil value, "the script reported nothing: #{status.inspect} #{stderr[0, 400]}"
    in_flight, locked, freed, damaged = value
    assert in_flight, "the inner read should have been parked when the buffer was looked at"
    assert_equal 0, damaged, "the kernel wrote into the freed buffer (#{damaged} canaries changed)"
    assert locked,
           "a read lent from inside the first lend's `locked?` question is in flight into an UNLOCKED buffer " \
           "(free #{freed ? "succeeded" : "raised"})"
    refute freed, "buffer.free succeeded while a read into it was in flight"
  end

  # --- plain leases from two fibers ------------------------------------------

  %i[first second].each do |finishing_first|
    define_method("test_two_plain_leases_#{finishing_first}_finishing_first") do
        isolated(label: "two plain leases, #{finishing_first} done first") do
        selector = lending_selector
        (in1, out1), (in2, out2) = IO.pipe, IO.pipe
        buffer = IO::Buffer.new(SIZE)
        results = {}
        first = parked_read(selector, in1, buffer, 0, results, :first)   # locks it (no entry)
        second = parked_read(selector, in2, buffer, 8, results, :second) # joins
        order = finishing_first == :first ? [[out1, first], [out2, second]] : [[out2, second], [out1, first]]
        finish(selector, order[0][0], order[0][1], "AAAA", "the first read to finish")
        assert buffer.locked?, "unlocked while the other read (#{finishing_first == :first ? :second : :first}) is in flight"
        finish(selector, order[1][0], order[1][1], "BBBB", "the second read to finish")
        refute buffer.locked?, "still locked after both reads"
        assert_equal [4, 4], [results[:first], results[:second]]
        buffer.free
        # Lent again afterwards: the table must be clean (locked by the call alone, unlocked after).
        Fiber.new { selector.io_write(Fiber.current, out1, buffer = IO::Buffer.new(4), 4) }.transfer
        refute buffer.locked?, "a fresh buffer stays locked after an inline write"
        selector.close
        true
      end
    end
  end

  # --- a plain lease of a root and a general-path lease of its slice ---------

  [%i[root slice root], %i[root slice slice], %i[slice root root], %i[slice root slice]].each do |start_a, start_b, done_first|
    define_method("test_#{start_a}_then_#{start_b}_#{done_first}_done_first") do
        isolated(label: "#{start_a} then #{start_b}, #{done_first} done first") do
        selector = lending_selector
        pipes = {root: IO.pipe, slice: IO.pipe}
        root = IO::Buffer.new(SIZE)
        slice = root.slice(16, 16)
        targets = {root: [root, 0], slice: [slice, 0]}
        results = {}
        fibers = {}
        [start_a, start_b].each do |which|
          buffer, offset = targets[which]
          fibers[which] = parked_read(selector, pipes[which][0], buffer, offset, results, which)
        end
        assert root.locked?, "the root is not locked while reads use it"
        other = done_first == :root ? :slice : :root
        finish(selector, pipes[done_first][1], fibers[done_first], "DONE", "the #{done_first} read")
        assert root.locked?, "the root was unlocked while the #{other} read still uses its memory"
        finish(selector, pipes[other][1], fibers[other], "LAST", "the #{other} read")
        refute root.locked?, "the root stays locked after both reads"
        refute slice.locked?, "the slice stays locked after its read"
        assert_equal({root: 4, slice: 4}, results)
        selector.close
        true
      end
    end
  end

  # --- a buffer its owner locked ---------------------------------------------

  def test_a_buffer_its_owner_locked_is_never_unlocked_by_us
    isolated(label: "owner-locked buffer") do
      selector = lending_selector
      (in1, out1), (in2, out2) = IO.pipe, IO.pipe
      buffer = IO::Buffer.new(SIZE)
      results = {}
      inside = nil
      owner = Fiber.new do
        buffer.locked do
          # The owner's own read joins its lock.
          results[:owned] = selector.io_read(Fiber.current, in1, buffer, 4, 0)
          inside = [buffer.locked?]
          selector.transfer # the owner's block waits, the lock held
          inside << buffer.locked?
        end
      end
      owner.transfer
      assert owner.alive?, "the owner's read should park"
      joiner = parked_read(selector, in2, buffer, 8, results, :joined)
      out1.write("OWN!")
      assert drive_until(selector) { results.key?(:owned) }, "the owner's read never completed"
      out2.write("JOIN")
      assert drive_until(selector) { !joiner.alive? }, "the joined read never completed"
      assert buffer.locked?, "a call unlocked a buffer whose owner's `locked { }` block is still running"
      owner.transfer
      assert_equal [true, true], inside, "inside the owner's block, after each read, the buffer must still be locked"
      refute buffer.locked?, "the owner's block ended: the buffer must be unlocked"
      selector.close
      true
    end
  end

  # --- two threads, two selectors, one buffer ---------------------------------

  %i[first second].each do |finishing_first|
    define_method("test_two_threads_two_selectors_one_buffer_#{finishing_first}_finishing_first") do
        isolated(label: "two threads, #{finishing_first} done first") do
        lending_selector.close
        buffer = IO::Buffer.new(SIZE)
        pipes = {first: IO.pipe, second: IO.pipe}
        parked = Queue.new
        threads = {first: 0, second: 8}.to_h do |key, offset|
          thread = Thread.new do
            selector = new_selector(Fiber.current)
            result = nil
            fiber = Fiber.new { result = selector.io_read(Fiber.current, pipes[key][0], buffer, 4, offset) }
            fiber.transfer
            parked << key
            selector.select(0.01) while fiber.alive?
            selector.close
            result
          end
          parked.pop # in order: the first locks it, the second joins
          [key, thread]
        end
        other = finishing_first == :first ? :second : :first
        pipes[finishing_first][1].write("ONE!")
        assert_equal 4, threads[finishing_first].value
        assert buffer.locked?, "unlocked while the #{other} thread's read is in flight"
        pipes[other][1].write("TWO!")
        assert_equal 4, threads[other].value
        refute buffer.locked?, "still locked after both threads' reads"
        true
      end
    end
  end

  # --- complete-now semantics -------------------------------------------------

  def test_a_write_that_fits_completes_without_parking_and_one_that_does_not_waits
    isolated(label: "inline write / full pipe") do
      selector = lending_selector
      input, output = IO.pipe
      buffer = IO::Buffer.new(8)
      buffer.set_string("12345678")
      outcome = in_fiber { selector.io_write(Fiber.current, output, buffer, 8) }
      assert_equal [:returned, 8], outcome, "a write with room: #{describe_outcome(outcome)}"
      assert_equal "12345678", input.read_nonblock(8)
      fill_pipe(output)
      outcome = in_fiber { selector.io_write(Fiber.current, output, buffer, 8) }
      assert_equal :parked, outcome[0], "a write on a full pipe must wait: #{describe_outcome(outcome)}"
      assert buffer.locked?, "the buffer of a parked write must stay lent"
      assert drain_until_done(selector, input, outcome[1]), "the write never completed"
      refute buffer.locked?
      # Length 0: one attempt; -EAGAIN on a full pipe, never a wait.
      fill_pipe(output)
      outcome = in_fiber { selector.io_write(Fiber.current, output, buffer, 0) }
      assert_equal [:returned, -Errno::EAGAIN::Errno], outcome, "length 0 on a full pipe: #{describe_outcome(outcome)}"
      refute buffer.locked?
      selector.close
      true
    end
  end

  [["/dev/shm", "tmpfs"], [Dir.tmpdir, "tmpdir"]].each do |dir, label|
    define_method("test_writes_and_pwrites_to_a_file_on_#{label}") do
        skip "#{dir} missing" unless File.directory?(dir)
      isolated(label: "file writes on #{label}") do
        selector = lending_selector
        path = File.join(dir, "io-event-lending-#{$$}")
        File.open(path, "w+") do |file|
          buffer = IO::Buffer.new(8)
          buffer.set_string("ABCDEFGH")
          calls = [
            -> { selector.io_write(Fiber.current, file, buffer, 8) },
            -> { selector.io_write(Fiber.current, file, buffer, 0, 4) },
            -> { selector.io_pwrite(Fiber.current, file, buffer, 100, 8, 0) },
            -> { selector.io_pwrite(Fiber.current, file, buffer, 200, 0, 6) },
          ]
          answers = calls.map do |call|
            value = nil
            fiber = Fiber.new { value = call.call }
            fiber.transfer
            # A parked attempt is resumed by select (one at a time: the
            # stream writes depend on the file position).
            assert drive_until(selector) { !fiber.alive? }, "a file write never completed"
            value
          end
          assert_equal [8, 4, 8, 2], answers
          refute buffer.locked?, "the buffer stays locked after the file writes"
          file.flush
          data = File.binread(path)
          assert_equal "ABCDEFGHEFGH", data[0, 12], "io_write (8, then length 0 from offset 4) at the file position"
          assert_equal "ABCDEFGH", data[100, 8], "io_pwrite at 100"
          assert_equal "GH", data[200, 2], "io_pwrite length 0 at 200 (offset 6)"
        end
        selector.close
        true
      ensure
        File.unlink(path) if path && File.exist?(path)
      end
    end
  end

  # Ruby's own IO hooks write with length 0 ("one attempt"). On a regular
  # file RWF_NOWAIT may answer -EAGAIN (ext4 does for a buffered write that
  # needs blocks), while io_wait reports a regular file always writable: the
  # write must still complete, not spin between the two forever.
  def test_file_write_through_a_scheduler_completes
    isolated(label: "File#write through a scheduler", timeout: 15) do
      require_relative "../support/scheduler"
      selector_class # skip if missing
      path = File.join(Dir.tmpdir, "io-event-lending-sched-#{$$}")
      variant = selector_variant
      size = nil
      thread = Thread.new do
        scheduler = SelectorVariants.with_env(variant.env) { IOEventTestScheduler.new(selector_class) }
        Fiber.set_scheduler(scheduler)
        Fiber.schedule do
          File.open(path, "w") do |file|
            file.sync = true
            file.write("hello world\n" * 10)
          end
          size = File.size(path)
        end
      end
      finished = thread.join(5)
      assert finished, "File#write under a fiber scheduler on #{variant} did not finish in 5 s (livelock?)"
      assert_equal 120, size
      true
    ensure
      File.unlink(path) if path && File.exist?(path)
    end
  end

  # From the loop fiber a write cannot park. An attempt that moved bytes and
  # then would have to wait must answer the bytes moved (or refuse before
  # moving any): an exception after a partial write loses data the caller
  # cannot know was written.
  def test_a_write_from_the_loop_fiber_never_raises_after_moving_bytes
    isolated(label: "partial write from the loop fiber") do
      selector = lending_selector
      input, output = IO.pipe
      # Leave one page of room.
      output.write_nonblock("x" * (65_536 - 4096))
      buffer = IO::Buffer.new(16_384)
      answer =
        begin
          selector.io_write(Fiber.current, output, buffer, 16_384)
        rescue StandardError => error
          error
        end
      queued = 0
      loop do
        chunk = input.read_nonblock(1 << 20, exception: false)
        break unless chunk.is_a?(String)

        queued += chunk.bytesize
      end
      written = queued - (65_536 - 4096)
      refute buffer.locked?
      if answer.is_a?(Exception)
        assert_equal 0, written,
                     "io_write from the loop fiber raised #{answer.class} (#{answer.message}) after writing #{written} bytes"
      else
        assert_equal written, answer, "io_write answered #{answer} but #{written} bytes reached the pipe"
      end
      selector.close
      true
    end
  end

  # Attempts completed inside their enter (every write's first try, every
  # length-0 call) must not leave bookkeeping behind until the next select:
  # a fiber that keeps writing to a fast peer, or polling with length 0,
  # without ever switching, would grow it without bound.
  def test_inline_attempts_leave_nothing_behind_until_select
    isolated(label: "inline attempts without select", timeout: 60) do
      selector = lending_selector
      input, _output = IO.pipe
      buffer = IO::Buffer.new(SIZE)
      rss = -> { File.read("/proc/self/status")[/VmRSS:\s+(\d+)/, 1].to_i }
      growth = nil
      Fiber.new do
        200.times { selector.io_read(Fiber.current, input, buffer, 0) }
        GC.start
        before = rss.call
        1_000_000.times { selector.io_read(Fiber.current, input, buffer, 0) }
        GC.start
        growth = rss.call - before
      end.transfer
      assert_operator growth, :<, 4096,
                      "1,000,000 length-0 io_reads without a select grew RSS by #{growth} kB (state kept per inline attempt)"
      selector.close
      true
    end
  end
end

# The pure-Ruby Select selector lends nothing to the kernel.
SelectorVariants.define("SoundnessLending", SoundnessLending,
                        variants: SelectorVariants::NATIVE)
