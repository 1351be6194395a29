# frozen_string_literal: true

# Issue 9, item 1: fork. A child never enters nor unmaps the ring it inherited
# (DONTFORK: its mappings were not inherited, and the child's own ring may be
# mapped at the same addresses). Closing or garbage-collecting the inherited
# selector in the child, before or after building its own, must leave the
# child's own selector working. Fork at every state: idle, with operations in
# flight, and while another thread is blocked in select. In the child the
# inherited selector is closed? and every operation raises IOError; in the
# parent everything in flight completes after the fork.

require_relative "support"

module SoundnessFork
  include Soundness::Helpers

  # Uses a selector that is this child's own: io_wait and io_read on a pipe,
  # a few rounds. Raises a failed assertion if any round goes wrong.
  def exercise_own_selector(own = nil, rounds: 3)
    own ||= new_selector(Fiber.current)
    step "own selector in use"
    input, output = IO.pipe
    rounds.times do |round|
      waited = nil
      waiter = Fiber.new { waited = own.io_wait(Fiber.current, input, IO::READABLE) }
      waiter.transfer
      output.write("w#{round}")
      assert drive_until(own) { !waiter.alive? }, "own io_wait round #{round} never resumed"
      assert_equal IO::READABLE, waited
      assert_equal "w#{round}", input.read_nonblock(16)

      buffer = IO::Buffer.new(16)
      read = nil
      reader = Fiber.new { read = own.io_read(Fiber.current, input, buffer, 3) }
      reader.transfer
      output.write("r#{round}!")
      assert drive_until(own) { !reader.alive? }, "own io_read round #{round} never resumed"
      assert_equal 3, read
      assert_equal "r#{round}!", buffer.get_string(0, 3)
      step "own selector round #{round} ok"
    end
    own.close
    assert own.closed?
  ensure
    input&.close
    output&.close
  end

  # Selectors that only @inherited refers to (built in a method of their own so
  # that no stack slot of the caller keeps one alive).
  def build_inherited(count)
    @inherited = Array.new(count) { new_selector(Fiber.current) }
    @inherited.each { |selector| selector.select(0) }
    nil
  end

  def collect_inherited
    @inherited = nil
    4.times { GC.start(full_mark: true, immediate_sweep: true) }
  end

  def teardown
    @inherited&.each { |selector| selector.close unless selector.closed? }
    @inherited = nil
    super
  end

  def test_child_builds_its_own_then_closes_the_inherited_one
    build_inherited(1)
    isolated(label: "forked child") do
      inherited = @inherited.first
      assert inherited.closed?, "closed? is not true in a forked child"
      own = new_selector(Fiber.current)
      step "own selector built before closing the inherited one"
      inherited.close
      step "inherited closed"
      assert inherited.closed?
      exercise_own_selector(own)
    end
  end

  def test_child_closes_the_inherited_one_then_builds_its_own
    build_inherited(1)
    isolated(label: "forked child") do
      @inherited.first.close
      step "inherited closed"
      exercise_own_selector
    end
  end

  def test_child_uses_its_own_while_the_inherited_one_is_closed_midway
    build_inherited(1)
    isolated(label: "forked child") do
      own = new_selector(Fiber.current)
      input, output = IO.pipe
      waited = nil
      waiter = Fiber.new { waited = own.io_wait(Fiber.current, input, IO::READABLE) }
      waiter.transfer
      own.select(0)
      step "own io_wait parked"
      @inherited.first.close
      step "inherited closed while own op in flight"
      output.write("x")
      assert drive_until(own) { !waiter.alive? }, "own io_wait never resumed"
      assert_equal IO::READABLE, waited
      own.close
      true
    end
  end

  def test_child_garbage_collects_the_inherited_ones_then_uses_its_own
    build_inherited(6)
    isolated(label: "forked child") do
      own = new_selector(Fiber.current)
      step "own selector built"
      collect_inherited
      step "inherited collected"
      own.close
      exercise_own_selector
      collect_inherited
      exercise_own_selector
    end
  end

  def test_child_garbage_collects_the_inherited_ones_while_its_own_is_in_use
    build_inherited(6)
    isolated(label: "forked child") do
      own = new_selector(Fiber.current)
      input, output = IO.pipe
      buffer = IO::Buffer.new(8)
      read = nil
      reader = Fiber.new { read = own.io_read(Fiber.current, input, buffer, 4) }
      reader.transfer
      own.select(0)
      collect_inherited
      step "inherited collected with own io_read in flight"
      output.write("data")
      assert drive_until(own) { !reader.alive? }, "own io_read never resumed"
      assert_equal 4, read
      assert_equal "data", buffer.get_string(0, 4)
      own.close
      true
    end
  end

  # Every operation on the inherited selector in a child: IOError, never a
  # crash, never a park, never a touch of the parent's kernel objects.
  def assert_inherited_selector_refuses(selector, file, input, output)
    assert selector.closed?, "closed? is not true in a forked child"
    buffer = IO::Buffer.new(8)
    child = fork { exit!(0) }
    operations = {
      "io_wait" => -> { selector.io_wait(Fiber.current, input, IO::READABLE) },
      "io_read" => -> { selector.io_read(Fiber.current, input, buffer, 1) },
      "io_write" => -> { selector.io_write(Fiber.current, output, buffer, 1) },
      "io_pread" => -> { selector.io_pread(Fiber.current, file, buffer, 0, 1, 0) },
      "io_pwrite" => -> { selector.io_pwrite(Fiber.current, file, buffer, 0, 1, 0) },
      "process_wait" => -> { selector.process_wait(Fiber.current, child, 0) },
      "select(0)" => -> { selector.select(0) },
      "select(nil)" => -> { selector.select(nil) },
    }
    wrong = operations.filter_map do |name, operation|
      step "inherited #{name}"
      outcome = in_fiber(&operation)
      next if outcome[0] == :raised && outcome[1].is_a?(IOError)

      "#{name} #{describe_outcome(outcome)}"
    end
    assert_empty wrong, "operations on the inherited selector in a child must raise IOError"
    assert_equal child, Process.wait(child), "process_wait on the closed selector consumed the exit status"
    assert_equal false, selector.wakeup, "wakeup of the inherited selector in a child"
    selector.close
    assert selector.closed?
  end

  def test_fork_with_reads_and_waits_in_flight
    selector = new_selector(Fiber.current)
    pipes = Array.new(4) { IO.pipe }
    buffers = Array.new(4) { IO::Buffer.new(8) }
    results = {}
    fibers = pipes.each_with_index.map do |(input, _), index|
      Fiber.new do
        results[index] =
          if index.even?
            length = selector.io_read(Fiber.current, input, buffers[index], 4)
            [length, buffers[index].get_string(0, 4)]
          else
            selector.io_wait(Fiber.current, input, IO::READABLE)
          end
      end.tap(&:transfer)
    end
    selector.select(0)
    file = Tempfile.new("soundness-fork")
    file.write("filedata")
    file.flush

    isolated(label: "forked child") do
      assert_inherited_selector_refuses(selector, file, pipes[0][0], pipes[1][1])
      step "inherited refused everything"
      4.times { GC.start }
      exercise_own_selector
    end

    assert fibers.all?(&:alive?), "the child's actions resumed a parent fiber"
    pipes.each_with_index { |(_, output), index| output.write(format("p%03d", index)) }
    assert drive_until(selector) { fibers.none?(&:alive?) }, "parent operations did not complete after the fork: #{results.inspect}"
    assert_equal [4, "p000"], results[0]
    assert_equal IO::READABLE, results[1]
    assert_equal [4, "p002"], results[2]
    assert_equal IO::READABLE, results[3]
  ensure
    selector&.close
    pipes&.each { |pair| pair.each(&:close) }
    file&.close!
  end

  def test_fork_while_another_thread_is_blocked_in_select
    input, output = IO.pipe
    ready = Queue.new
    holder = {}
    thread = Thread.new do
      selector = new_selector(Fiber.current)
      holder[:selector] = selector
      buffer = IO::Buffer.new(8)
      reader = Fiber.new do
        length = selector.io_read(Fiber.current, input, buffer, 4)
        holder[:read] = [length, buffer.get_string(0, 4)]
      end
      reader.transfer
      ready << true
      deadline = monotonic + 5
      selector.select(5) while reader.alive? && monotonic < deadline
      selector.close
      :done
    end
    ready.pop
    sleep 0.1 # the thread is blocked in select(5) now
    file = Tempfile.new("soundness-fork")
    file.write("filedata")
    file.flush

    isolated(label: "forked child") do
      selector = holder[:selector]
      other_in, other_out = IO.pipe
      assert_inherited_selector_refuses(selector, file, other_in, other_out)
      holder.clear
      4.times { GC.start }
      exercise_own_selector
    end

    output.write("abcd")
    assert thread.join(3), "the parent's thread did not finish its read after the fork"
    assert_equal :done, thread.value
    assert_equal [4, "abcd"], holder[:read]
  ensure
    thread&.kill
    thread&.join(1)
    input&.close
    output&.close
    file&.close!
  end

  def test_fork_of_a_child_in_a_child
    build_inherited(2)
    isolated(label: "forked child") do
      own = new_selector(Fiber.current)
      own.select(0)
      isolated(label: "grandchild") do
        assert own.closed?, "closed? in a grandchild"
        @inherited.first.close
        own.close
        collect_inherited
        exercise_own_selector
      end
      refute own.closed?, "the grandchild closed the child's selector"
      own.close
      exercise_own_selector
    end
  end
end

SelectorVariants.define("SoundnessFork", SoundnessFork, variants: SelectorVariants::PLAIN)
