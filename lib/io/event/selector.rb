# frozen_string_literal: true

require "fcntl"

require_relative "support"

class IO
  module Event
    # The selectors. URing and EPoll are defined here by the native extension
    # (loaded later by native.rb); Select is pure Ruby and always present.
    module Selector
      # Preference order when IO_EVENT_SELECTOR is not set.
      PREFERENCE = %i[URing EPoll Select].freeze
      private_constant :PREFERENCE

      # The selector class to use: the one named by env["IO_EVENT_SELECTOR"]
      # ("URing", "EPoll" or "Select") when set, otherwise the best one defined
      # in this process. Raises NameError when the variable names a selector
      # that does not exist here.
      def self.default(env = ENV)
        name = env["IO_EVENT_SELECTOR"]
        return named(name) if name && !name.empty?

        const_get(PREFERENCE.find { |candidate| const_defined?(candidate, false) }, false)
      end

      # Builds the default selector for +loop+ (the event-loop fiber), wrapped
      # in Debug::Selector when env["IO_EVENT_DEBUG_SELECTOR"] is set (to
      # anything but "", "0" or "false").
      def self.new(loop, env = ENV)
        selector = default(env).new(loop)

        if debug?(env)
          begin
            selector = Debug::Selector.wrap(selector, env)
          rescue Exception # rubocop:disable Lint/RescueException
            selector.close
            raise
          end
        end

        selector
      end

      # Descriptors made non-blocking by .nonblock, and how many blocks are
      # still using each: the flag is cleared when the last one leaves, so a
      # fiber that parks inside .nonblock does not get a blocking descriptor
      # back from another fiber that finished first.
      @nonblock_users = {}
      @nonblock_lock = Thread::Mutex.new

      # Runs the block with O_NONBLOCK set on +io+, then clears it again if it
      # was not set before (once every concurrent block on that descriptor
      # has finished), also when the block raises. Other flags are left as
      # they are. Raises IOError if +io+ is closed. Returns the block's value.
      def self.nonblock(io)
        io = io.to_io
        descriptor = io.fileno
        return yield unless nonblock_enter(io, descriptor)

        begin
          yield
        ensure
          nonblock_leave(io, descriptor)
        end
      end

      # Sets the flag if needed. Returns whether this block must leave.
      def self.nonblock_enter(io, descriptor)
        @nonblock_lock.synchronize do
          flags = io.fcntl(Fcntl::F_GETFL)
          if @nonblock_users.key?(descriptor)
            @nonblock_users[descriptor] += 1
          elsif flags.anybits?(Fcntl::O_NONBLOCK)
            return false # Non-blocking already, and not because of us.
          else
            @nonblock_users[descriptor] = 1
          end
          # (Also when counted: the number may belong to a new file by now.)
          io.fcntl(Fcntl::F_SETFL, flags | Fcntl::O_NONBLOCK) unless flags.anybits?(Fcntl::O_NONBLOCK)
          true
        end
      end
      private_class_method :nonblock_enter

      def self.nonblock_leave(io, descriptor)
        @nonblock_lock.synchronize do
          remaining = @nonblock_users[descriptor] - 1
          if remaining.positive?
            @nonblock_users[descriptor] = remaining
            return
          end

          @nonblock_users.delete(descriptor)
          # The block may have closed the IO (and the number may be reused by
          # now): only touch the descriptor we changed.
          return if io.closed? || io.fileno != descriptor

          begin
            flags = io.fcntl(Fcntl::F_GETFL)
            io.fcntl(Fcntl::F_SETFL, flags & ~Fcntl::O_NONBLOCK)
          rescue Errno::EBADF
            # Closed underneath us; nothing to restore.
          end
        end
      end
      private_class_method :nonblock_leave

      # Waits for a child to change state on a helper thread, for the cases a
      # selector cannot watch itself (pid <= 0: any child or a process group).
      # Called as process_wait(pid, flags), like io-event, or as
      # process_wait(fiber, pid, flags) with the waiting fiber first (as a
      # selector's own process_wait gets it; the fiber is not needed here).
      # +flags+ are waitpid flags (Process::WNOHANG, Process::WUNTRACED).
      # Returns a Process::Status (nil with WNOHANG when nothing changed).
      #
      # Joining the thread is fiber-scheduler aware, so under a scheduler only
      # the calling fiber waits; without one the whole thread waits. If the
      # caller is interrupted (an exception raised into it, Thread#raise,
      # Fiber#kill), the helper is killed, so it does not go on to reap a
      # child nobody waits for any more.
      def self.process_wait(*arguments)
        unless arguments.size.between?(2, 3)
          raise ArgumentError, "wrong number of arguments (given #{arguments.size}, expected 2..3)"
        end

        pid, flags = arguments.last(2)
        unless pid.is_a?(Integer) && flags.is_a?(Integer)
          raise TypeError, "process_wait: pid and flags must be Integers, not #{pid.class} and #{flags.class}"
        end

        thread = ::Thread.new do
          ::Thread.current.report_on_exception = false
          ::Process::Status.wait(pid, flags)
        end

        thread.value
      ensure
        thread&.kill
      end

      class << self
        private

        def named(name)
          klass = const_get(name, false) if name.match?(/\A[A-Z]\w*\z/) && const_defined?(name, false)

          unless klass.is_a?(Class) && klass.method_defined?(:select)
            raise NameError.new(
              "IO_EVENT_SELECTOR=#{name.inspect} names no selector in this process " \
              "(available: #{available.join(', ')})",
              name.to_sym
            )
          end

          klass
        end

        def available
          PREFERENCE.select { |candidate| const_defined?(candidate, false) }
        end

        def debug?(env)
          value = env["IO_EVENT_DEBUG_SELECTOR"]
          value && !["", "0", "false"].include?(value)
        end
      end
    end
  end
end

require_relative "selector/select"
require_relative "debug/selector"
