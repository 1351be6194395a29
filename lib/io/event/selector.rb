# frozen_string_literal: true

require_relative "implementation"
require_relative "support"
require_relative "selector/nonblock"

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
