# frozen_string_literal: true

require_relative "../support"

class IO
  module Event
    module Debug
      # Wraps any selector (URing, EPoll, Select) and checks that it is used as
      # PROTOCOL.md says before delegating each call; optionally logs every
      # call and what it returned.
      #
      # Enabled for IO::Event::Selector.new by IO_EVENT_DEBUG_SELECTOR=1; the
      # log goes to the file named by IO_EVENT_DEBUG_SELECTOR_LOG ("-" for
      # standard error).
      #
      # Misuse raises: TypeError for a non-fiber, non-IO, non-buffer or
      # non-Integer argument; ArgumentError for negative lengths or offsets or
      # an empty event mask; IOError for a closed IO or a closed selector;
      # RuntimeError when created or selected off the loop fiber, when closed
      # twice, for a call from another thread (except #wakeup and #push, which a
      # scheduler's unblock makes from any thread) and for a parking call made
      # on the loop fiber or for another fiber; FiberError for resuming or
      # yielding to the current fiber.
      class Selector
        EVENT_MASK = IO::READABLE | IO::PRIORITY | IO::WRITABLE
        private_constant :EVENT_MASK

        # Methods a selector may lack; the wrapper answers respond_to? for them
        # as the wrapped selector does.
        OPTIONAL = %i[io_read io_write io_pread io_pwrite io_close process_wait].freeze
        private_constant :OPTIONAL

        # Wraps +selector+, logging to env["IO_EVENT_DEBUG_SELECTOR_LOG"] if set.
        def self.wrap(selector, env = ENV)
          log = open_log(env["IO_EVENT_DEBUG_SELECTOR_LOG"])
          new(selector, log: log, close_log: log.is_a?(File))
        rescue Exception # rubocop:disable Lint/RescueException
          log.close if log.is_a?(File)
          raise
        end

        # Appends: every selector of the process (one per thread) may share
        # the path, and none should erase what another wrote.
        def self.open_log(path)
          return nil if path.nil? || path.empty?
          return $stderr if path == "-"

          File.open(path, "a").tap { |file| file.sync = true }
        end
        private_class_method :open_log

        # +log+ is any object with #puts, or nil; +close_log+ closes it with
        # the selector. Must be created on the loop fiber of +selector+.
        def initialize(selector, log: nil, close_log: false)
          loop = selector.loop
          if loop.is_a?(Fiber) && !Fiber.current.equal?(loop)
            Kernel.raise "selector must be initialized on event loop fiber #{loop.inspect}, " \
                         "not on #{Fiber.current.inspect}"
          end

          @selector = selector
          @log = log
          @close_log = close_log
          @thread = Thread.current
          @closed = false
        end

        # The wrapped selector.
        attr_reader :selector

        def loop
          @selector.loop
        end

        def idle_duration
          @selector.idle_duration
        end

        # The monotonic clock, as the log's time stamps show it.
        def now
          Process.clock_gettime(Process::CLOCK_MONOTONIC)
        end

        # Writes one line to the log, if there is one: +message+, or what the
        # block returns (the block is only called when there is a log).
        def log(message = nil)
          log = @log
          return unless log

          message = yield if block_given?
          line = format("T+%.6f; %s", now, message)
          Support.blocking { log.puts(line) }
          nil
        rescue IOError
          # A closed log must not break the event loop.
          nil
        end

        def closed?
          @closed || @selector.closed?
        end

        # Closing twice is a mistake in the caller: it raises.
        def close
          owner_thread!(:close)
          Kernel.raise "selector already closed" if @closed

          log("close")
          @closed = true
          @selector.close
        ensure
          if @close_log && @log && !@log.closed?
            @log.close
            @log = nil
          end
        end

        # Any thread may call it.
        def wakeup
          forward(:wakeup)
        end

        def transfer
          owner_thread!(:transfer)
          forward(:transfer)
        end

        def resume(fiber, *arguments)
          owner_thread!(:resume)
          fiber!(fiber)
          Kernel.raise FiberError, "resume: cannot resume the current fiber" if fiber.equal?(Fiber.current)
          forward(:resume, fiber, *arguments)
        end

        def yield
          owner_thread!(:yield)
          Kernel.raise FiberError, "yield called on the event loop fiber" if on_loop?
          forward(:yield)
        end

        # Any thread may call it (a scheduler's unblock pushes, then wakes).
        def push(fiber)
          fiber!(fiber)
          forward(:push, fiber)
        end

        def raise(fiber, *arguments, **options)
          owner_thread!(:raise)
          fiber!(fiber)
          unless fiber.respond_to?(:raise)
            Kernel.raise TypeError, "raise: #{fiber.inspect} does not respond to #raise"
          end
          forward(:raise, fiber, *arguments, **options)
        end

        def ready?
          @selector.ready?
        end

        def select(duration = nil)
          owner_thread!(:select)
          open!
          loop = @selector.loop
          if loop.is_a?(Fiber) && !Fiber.current.equal?(loop)
            Kernel.raise "select must be run on event loop fiber #{loop.inspect}, not on #{Fiber.current.inspect}"
          end
          unless duration.nil? || (duration.is_a?(Numeric) && duration.real?)
            Kernel.raise TypeError, "select duration must be nil or a number of seconds, not #{duration.class}"
          end
          forward(:select, duration)
        end

        def io_wait(fiber, io, events)
          parking!(:io_wait, fiber)
          io!(:io_wait, io)
          integer!(:io_wait, "events", events)
          if (events & EVENT_MASK).zero?
            Kernel.raise ArgumentError, "io_wait: events #{events} ask for nothing (READABLE, PRIORITY or WRITABLE)"
          end
          forward(:io_wait, fiber, io, events)
        end

        def io_read(fiber, io, buffer, length, offset = 0)
          transfer_checks!(:io_read, fiber, io, buffer, length: length, offset: offset)
          forward(:io_read, fiber, io, buffer, length, offset)
        end

        def io_write(fiber, io, buffer, length, offset = 0)
          transfer_checks!(:io_write, fiber, io, buffer, length: length, offset: offset)
          forward(:io_write, fiber, io, buffer, length, offset)
        end

        def io_pread(fiber, io, buffer, from, length, offset)
          transfer_checks!(:io_pread, fiber, io, buffer, from: from, length: length, offset: offset)
          forward(:io_pread, fiber, io, buffer, from, length, offset)
        end

        def io_pwrite(fiber, io, buffer, from, length, offset)
          transfer_checks!(:io_pwrite, fiber, io, buffer, from: from, length: length, offset: offset)
          forward(:io_pwrite, fiber, io, buffer, from, length, offset)
        end

        def io_close(fd)
          owner_thread!(:io_close)
          integer!(:io_close, "fd", fd)
          forward(:io_close, fd)
        end

        def process_wait(fiber, pid, flags)
          parking!(:process_wait, fiber)
          integer!(:process_wait, "pid", pid)
          integer!(:process_wait, "flags", flags)
          forward(:process_wait, fiber, pid, flags)
        end

        def respond_to?(name, include_private = false)
          return @selector.respond_to?(name, include_private) if OPTIONAL.include?(name.to_sym)

          super
        end

        def inspect
          "#<#{self.class} #{@selector.inspect}>"
        end

        private

        # Anything this wrapper does not know is passed through unchecked.
        def method_missing(name, *arguments, **options, &block)
          return super unless @selector.respond_to?(name)

          forward(name, *arguments, **options, &block)
        end

        def respond_to_missing?(name, include_private = false)
          @selector.respond_to?(name, include_private) || super
        end

        # Logs the call, makes it on the wrapped selector, logs what it
        # returned (or raised), and returns that.
        def forward(name, *arguments, **options, &block)
          log { "#{name}(#{describe(arguments, options)})" }
          result = @selector.public_send(name, *arguments, **options, &block)
          log { "#{name} -> #{result.inspect}" }
          result
        rescue Exception => error # rubocop:disable Lint/RescueException
          log { "#{name} raised #{error.class}: #{error.message}" }
          Kernel.raise
        end

        def describe(arguments, options)
          parts = arguments.map do |argument|
            argument.is_a?(IO::Buffer) ? "#<IO::Buffer size=#{argument.size}>" : argument.inspect
          end
          options.each { |key, value| parts << "#{key}: #{value.inspect}" }
          parts.join(", ")
        end

        def on_loop?
          Fiber.current.equal?(@selector.loop)
        end

        def owner_thread!(name)
          return if Thread.current.equal?(@thread)

          Kernel.raise "#{name} called from #{Thread.current.inspect}, but the selector belongs to #{@thread.inspect}"
        end

        def open!
          Kernel.raise IOError, "selector is closed" if @closed
        end

        def fiber!(fiber)
          return if fiber.respond_to?(:alive?) && fiber.respond_to?(:transfer)

          Kernel.raise TypeError, "expected a Fiber (or an object with #alive? and #transfer), not #{fiber.class}"
        end

        # Checks for a call that parks the current fiber until +fiber+ is resumed.
        def parking!(name, fiber)
          owner_thread!(name)
          open!
          fiber!(fiber)
          Kernel.raise "#{name} called on the event loop fiber, which would park the loop itself" if on_loop?
          return unless fiber.is_a?(Fiber) && !fiber.equal?(Fiber.current)

          Kernel.raise "#{name} must be given the current fiber, not #{fiber.inspect}"
        end

        def io!(name, io)
          unless io.respond_to?(:to_io)
            Kernel.raise TypeError, "#{name}: expected an IO, not #{io.class}"
          end
          Kernel.raise IOError, "closed stream" if io.to_io.closed?
        end

        def integer!(name, what, value)
          return if value.is_a?(Integer)

          Kernel.raise TypeError, "#{name}: #{what} must be an Integer, not #{value.class}"
        end

        # The IO's state is the wrapped selector's to judge: a transfer at
        # offset == buffer.size answers 0 without touching the IO, closed or not.
        def transfer_checks!(name, fiber, io, buffer, **numbers)
          parking!(name, fiber)
          unless io.respond_to?(:to_io)
            Kernel.raise TypeError, "#{name}: expected an IO, not #{io.class}"
          end
          unless defined?(IO::Buffer) && buffer.is_a?(IO::Buffer)
            Kernel.raise TypeError, "#{name}: expected an IO::Buffer, not #{buffer.class}"
          end
          numbers.each do |what, value|
            integer!(name, what, value)
            Kernel.raise ArgumentError, "#{name}: negative #{what} #{value}" if value.negative?
          end
        end
      end
    end
  end
end
