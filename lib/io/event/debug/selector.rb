# frozen_string_literal: true

require_relative "../support"

class IO
  module Event
    module Debug
      # Wraps any selector (URing, EPoll, Select) and checks that it is used as
      # PROTOCOL.md says before delegating each call; optionally logs every call.
      #
      # Enabled for IO::Event::Selector.new by IO_EVENT_DEBUG_SELECTOR=1; the
      # log goes to the file named by IO_EVENT_DEBUG_SELECTOR_LOG ("-" for
      # standard error).
      #
      # Misuse raises: TypeError for a non-fiber, non-IO, non-buffer or
      # non-Integer argument; ArgumentError for negative lengths or offsets or an
      # empty event mask; IOError for a closed IO or a closed selector;
      # RuntimeError for a call from another thread (except #wakeup and #push,
      # which a scheduler's unblock makes from any thread), for select off the loop
      # fiber and for a parking call made on the loop fiber or for another
      # fiber; FiberError for resuming or yielding to the current fiber.
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

        def self.open_log(path)
          return nil if path.nil? || path.empty?
          return $stderr if path == "-"

          File.open(path, "a").tap { |file| file.sync = true }
        end
        private_class_method :open_log

        # +log+ is any object with #puts, or nil; +close_log+ closes it with
        # the selector. Must be created on the loop fiber of +selector+.
        def initialize(selector, log: nil, close_log: false)
          @selector = selector
          @log = log
          @close_log = close_log
          @thread = Thread.current
          @closed = false

          loop = selector.loop
          if loop.is_a?(Fiber) && !Fiber.current.equal?(loop)
            Kernel.raise "Debug::Selector must be created on the event loop fiber"
          end
        end

        # The wrapped selector.
        attr_reader :selector

        def loop
          @selector.loop
        end

        def idle_duration
          @selector.idle_duration
        end

        def closed?
          @closed || @selector.closed?
        end

        # Idempotent, like every selector's close.
        def close
          owner_thread!(:close)
          log { "close" }
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
          result = @selector.wakeup
          log { "wakeup -> #{result}" }
          result
        end

        def transfer
          owner_thread!(:transfer)
          log { "transfer from #{Fiber.current.inspect}" }
          @selector.transfer
        end

        def resume(fiber, *arguments)
          owner_thread!(:resume)
          fiber!(fiber)
          Kernel.raise FiberError, "resume: cannot resume the current fiber" if fiber.equal?(Fiber.current)
          log { "resume #{fiber.inspect} with #{arguments.inspect}" }
          @selector.resume(fiber, *arguments)
        end

        def yield
          owner_thread!(:yield)
          Kernel.raise FiberError, "yield called on the event loop fiber" if on_loop?
          log { "yield #{Fiber.current.inspect}" }
          @selector.yield
        end

        # Any thread may call it (a scheduler's unblock pushes, then wakes).
        def push(fiber)
          fiber!(fiber)
          log { "push #{fiber.inspect}" }
          @selector.push(fiber)
        end

        def raise(fiber, *arguments, **options)
          owner_thread!(:raise)
          fiber!(fiber)
          unless fiber.respond_to?(:raise)
            Kernel.raise TypeError, "raise: #{fiber.inspect} does not respond to #raise"
          end
          log { "raise in #{fiber.inspect}: #{arguments.inspect}" }
          if options.empty?
            @selector.raise(fiber, *arguments)
          else
            @selector.raise(fiber, *arguments, **options)
          end
        end

        def ready?
          @selector.ready?
        end

        def select(duration = nil)
          owner_thread!(:select)
          open!
          loop = @selector.loop
          if loop.is_a?(Fiber) && !Fiber.current.equal?(loop)
            Kernel.raise "select must be called on the event loop fiber"
          end
          unless duration.nil? || (duration.is_a?(Numeric) && duration.real?)
            Kernel.raise TypeError, "select duration must be nil or a number of seconds, not #{duration.class}"
          end
          log { "select #{duration.inspect}" }
          result = @selector.select(duration)
          log { "select -> #{result.inspect}" }
          result
        end

        def io_wait(fiber, io, events)
          parking!(:io_wait, fiber)
          io!(:io_wait, io)
          integer!(:io_wait, "events", events)
          if (events & EVENT_MASK).zero?
            Kernel.raise ArgumentError, "io_wait: events #{events} ask for nothing (READABLE, PRIORITY or WRITABLE)"
          end
          log { "io_wait #{fiber.inspect} #{io.inspect} events=#{events}" }
          result = @selector.io_wait(fiber, io, events)
          log { "io_wait #{io.inspect} -> #{result.inspect}" }
          result
        end

        def io_read(fiber, io, buffer, length, offset = 0)
          transfer_checks!(:io_read, fiber, io, buffer, length: length, offset: offset)
          log { "io_read #{io.inspect} length=#{length} offset=#{offset} size=#{buffer.size}" }
          result = @selector.io_read(fiber, io, buffer, length, offset)
          log { "io_read #{io.inspect} -> #{result.inspect}" }
          result
        end

        def io_write(fiber, io, buffer, length, offset = 0)
          transfer_checks!(:io_write, fiber, io, buffer, length: length, offset: offset)
          log { "io_write #{io.inspect} length=#{length} offset=#{offset} size=#{buffer.size}" }
          result = @selector.io_write(fiber, io, buffer, length, offset)
          log { "io_write #{io.inspect} -> #{result.inspect}" }
          result
        end

        def io_pread(fiber, io, buffer, from, length, offset)
          transfer_checks!(:io_pread, fiber, io, buffer, from: from, length: length, offset: offset)
          log { "io_pread #{io.inspect} from=#{from} length=#{length} offset=#{offset}" }
          result = @selector.io_pread(fiber, io, buffer, from, length, offset)
          log { "io_pread #{io.inspect} -> #{result.inspect}" }
          result
        end

        def io_pwrite(fiber, io, buffer, from, length, offset)
          transfer_checks!(:io_pwrite, fiber, io, buffer, from: from, length: length, offset: offset)
          log { "io_pwrite #{io.inspect} from=#{from} length=#{length} offset=#{offset}" }
          result = @selector.io_pwrite(fiber, io, buffer, from, length, offset)
          log { "io_pwrite #{io.inspect} -> #{result.inspect}" }
          result
        end

        def io_close(fd)
          owner_thread!(:io_close)
          integer!(:io_close, "fd", fd)
          log { "io_close #{fd}" }
          @selector.io_close(fd)
        end

        def process_wait(fiber, pid, flags)
          parking!(:process_wait, fiber)
          integer!(:process_wait, "pid", pid)
          integer!(:process_wait, "flags", flags)
          log { "process_wait #{fiber.inspect} pid=#{pid} flags=#{flags}" }
          result = @selector.process_wait(fiber, pid, flags)
          log { "process_wait #{pid} -> #{result.inspect}" }
          result
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

          log { "#{name} #{arguments.inspect}" }
          @selector.public_send(name, *arguments, **options, &block)
        end

        def respond_to_missing?(name, include_private = false)
          @selector.respond_to?(name, include_private) || super
        end

        # Writes the block's message, if there is a log (the block is not
        # called otherwise).
        def log
          log = @log
          return unless log

          line = format("T+%.6f; %s", Process.clock_gettime(Process::CLOCK_MONOTONIC), yield)
          Support.blocking { log.puts(line) }
        rescue IOError
          # A closed log must not break the event loop.
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

        def transfer_checks!(name, fiber, io, buffer, **numbers)
          parking!(name, fiber)
          io!(name, io)
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
