# frozen_string_literal: true

# `select(0)` with something to do takes its own route: the entry checks the
# receiver and the owner thread once, then runs the non-blocking pass without
# the full method's checks (`select_zero` / `select_now` in uring/select.rs and
# epoll/select.rs). Every way out of that route must be the full method's: the
# same exceptions, the same state after them. Each case runs with `select(0)`,
# `select(0.0)` and, for comparison, a short non-zero duration (the full
# method: with a fiber ready it never waits).

require_relative "support"

module SoundnessSelectZero
  include Soundness::Helpers

  DURATIONS = { "zero" => 0, "float_zero" => 0.0, "full_method" => 0.001 }.freeze

  def answer(&block)
    block.call.inspect
  rescue StandardError => e
    "#{e.class}: #{e.message}"
  end

  DURATIONS.each do |name, duration|
    define_method("test_#{name}_closed_with_a_fiber_ready_raises_closed") do
      isolated(label: "closed, select(#{duration})") do
        selector = new_selector(Fiber.current)
        ran = false
        selector.push(Fiber.new { ran = true })
        selector.close
        assert_equal "IOError: selector is closed", answer { selector.select(duration) }
        refute ran, "a fiber ran on a closed selector"
        true
      end
    end

    define_method("test_#{name}_forked_child_with_a_fiber_ready_raises_closed") do
      isolated(label: "forked child, select(#{duration})") do
        selector = new_selector(Fiber.current)
        selector.push(Fiber.new { :ran })
        reader, writer = IO.pipe
        pid = fork do
          reader.close
          writer.puts answer { selector.select(duration) }
          writer.close
          exit!(0)
        end
        writer.close
        _, status = Process.wait2(pid)
        assert status.success?, "the forked child died: #{status.inspect}"
        assert_equal "IOError: selector is closed (forked child)", reader.read.strip
        true
      end
    end

    define_method("test_#{name}_foreign_thread_with_a_fiber_ready_raises") do
      isolated(label: "foreign thread, select(#{duration})") do
        selector = new_selector(Fiber.current)
        ran = false
        selector.push(Fiber.new { ran = true })
        outcome = Thread.new { answer { selector.select(duration) } }.value
        assert_equal "RuntimeError: selector used from a thread other than the one that created it", outcome
        refute ran, "another thread ran the owner's fiber"
        assert_equal 1, selector.select(0).then { ran ? 1 : 0 }, "the owner's fiber was lost"
        true
      end
    end

    define_method("test_#{name}_a_ready_fiber_that_raises_leaves_the_selector_usable") do
      isolated(label: "raising fiber, select(#{duration})") do
        selector = new_selector(Fiber.current)
        selector.push(Fiber.new { raise "boom" })
        assert_equal "RuntimeError: boom", answer { selector.select(duration) }
        assert_equal "0", answer { selector.select(duration) }, "select after the raise"
        ran = false
        selector.push(Fiber.new { ran = true })
        selector.select(duration)
        assert ran, "a fiber pushed after the raise did not run"
        selector.close
        true
      end
    end

    define_method("test_#{name}_a_ready_fiber_that_closes_the_selector") do
      isolated(label: "closing fiber, select(#{duration})") do
        selector = new_selector(Fiber.current)
        selector.push(Fiber.new { selector.close })
        assert_equal "IOError: selector is closed", answer { selector.select(duration) }
        assert selector.closed?
        true
      end
    end

    define_method("test_#{name}_a_resumed_waiter_that_raises_or_closes_the_selector") do
      isolated(label: "resumed waiter, select(#{duration})") do
        { "raises" => [->(_) { raise "boom" }, "RuntimeError: boom"],
          # Closed by the fiber it resumed, select answers that fiber (it
          # touches nothing of the selector afterwards).
          "closes" => [->(selector) { selector.close }, "1"] }.each do |what, (finish, expected)|
          selector = new_selector(Fiber.current)
          reader, writer = IO.pipe
          waiter = Fiber.new do
            selector.io_wait(Fiber.current, reader, IO::READABLE)
            finish.call(selector)
          end
          selector.push(waiter)
          assert_equal "0", answer { selector.select(0) }, "#{what}: the waiter parks"
          writer.write("x")
          outcome = nil
          20.times do
            outcome = answer { selector.select(duration) }
            break unless outcome == "0"
          end
          assert_equal expected, outcome, "#{what}: select(#{duration}) resuming the waiter"
          if what == "raises"
            assert_equal "0", answer { selector.select(duration) }, "select after the raise"
            selector.close
          else
            assert selector.closed?
          end
          reader.close
          writer.close
        end
        true
      end
    end

    define_method("test_#{name}_a_ready_fiber_that_throws") do
      isolated(label: "throwing fiber, select(#{duration})") do
        selector = new_selector(Fiber.current)
        selector.push(Fiber.new { throw :away })
        outcome = answer { catch(:away) { selector.select(duration) } }
        assert_match(/\AUncaughtThrowError: uncaught throw :away/, outcome)
        assert_equal "0", answer { selector.select(duration) }, "select after the throw"
        selector.close
        true
      end
    end
  end
end

# The native selectors only: the Ruby Select selector has no such route, no
# owner thread, and goes on after a fiber closed it.
SelectorVariants.define("SoundnessSelectZero", SoundnessSelectZero,
                        variants: SelectorVariants::NATIVE)

# An epoll event whose data was not set by us (a foreign entry in the set, as
# when the set's number was closed behind our back and reused by another
# library's set) marks the set stale, whatever the data: a negative
# descriptor half (C io-event registers its interrupt with fd -1) once made
# the look-up panic, which aborted the process from select(0).
module SoundnessEPollForeignEvent
  include Soundness::Helpers

  def eventpoll_fds
    Dir.children("/proc/self/fd").select do |fd|
      File.readlink("/proc/self/fd/#{fd}").include?("eventpoll")
    rescue SystemCallError
      false
    end.map(&:to_i)
  end

  { "negative_descriptor" => 0xFFFF_FFFF, "unknown_descriptor_and_tag" => (7 << 32) | 5 }.each do |kind, data|
    SoundnessSelectZero::DURATIONS.each do |name, duration|
      define_method("test_#{name}_an_event_with_#{kind}_data_marks_the_set_stale") do
        begin
          require "fiddle"
        rescue LoadError
          skip "needs fiddle to add a foreign epoll entry"
        end
        isolated(label: "foreign event (#{kind}), select(#{duration})") do
          before = eventpoll_fds
          selector = new_selector(Fiber.current)
          epoll_fd = (eventpoll_fds - before).first
          refute_nil epoll_fd, "the selector's epoll set"
          ctl = Fiddle::Function.new(Fiddle.dlopen(nil)["epoll_ctl"],
                                     [Fiddle::TYPE_INT, Fiddle::TYPE_INT, Fiddle::TYPE_INT, Fiddle::TYPE_VOIDP],
                                     Fiddle::TYPE_INT)
          reader, writer = IO.pipe
          event = [1, data].pack("L Q") # EPOLLIN; struct epoll_event is packed on x86_64
          assert_equal 0, ctl.call(epoll_fd, 1, reader.fileno, Fiddle::Pointer[event]), "epoll_ctl(ADD)"
          writer.write("x")
          step "foreign entry added"
          assert_equal [0, 0], [selector.select(duration), selector.select(duration)]
          # The set was rebuilt: the foreign entry is gone, waiting works.
          waiter = Fiber.new { selector.io_wait(Fiber.current, reader, IO::READABLE) }
          selector.push(waiter)
          20.times do
            selector.select(duration)
            break unless waiter.alive?
          end
          refute waiter.alive?, "a waiter on the pipe was never resumed"
          selector.close
          true
        end
      end
    end
  end
end

SelectorVariants.define("SoundnessEPollForeignEvent", SoundnessEPollForeignEvent,
                        variants: SelectorVariants::PLAIN.select { |variant| variant.class_name == "EPoll" })
