# frozen_string_literal: true

class IO
  module Event
    # A self-pipe: any thread (or a signal handler) calls #signal, and the
    # selector that keeps #to_io in its read set wakes up. Used by the pure-Ruby
    # Select selector; the native selectors use an eventfd instead.
    #
    # Attached to a selector (.attach, as io-event's), a fiber of its own
    # waits on the pipe through the selector's io_wait and drains it, so
    # #signal wakes any selector. Closing the interrupt ends that fiber
    # quietly: an IOError for the closed pipe never leaves it.
    class Interrupt
      # An interrupt whose fiber waits on +selector+ (started at once, from the
      # selector's loop fiber).
      def self.attach(selector)
        new(selector)
      end

      def initialize(selector = nil)
        @input, @output = ::IO.pipe
        @input.binmode
        @output.binmode
        @output.sync = true
        @scratch = String.new(capacity: 4096)
        @fiber = nil
        attach(selector) if selector
      end

      # The attached fiber, or nil.
      attr_reader :fiber

      # The read end, to put in the IO.select read set.
      def to_io
        @input
      end

      # Wakes the reader. Safe from any thread and from a trap handler; never
      # blocks (a full pipe already holds a pending wake-up). Returns true when
      # a byte was written, false when the pipe was full or closed.
      def signal
        @output.write_nonblock(".", exception: false) == 1
      rescue IOError, Errno::EPIPE, Errno::EBADF
        false
      end

      # Drains pending wake-ups without blocking; returns how many there were.
      # Call it from one thread at a time (the selector's).
      def clear
        count = 0
        loop do
          chunk = @input.read_nonblock(4096, @scratch, exception: false)
          break unless chunk.is_a?(String)

          count += chunk.bytesize
        end
        count
      rescue IOError, Errno::EBADF
        count
      end

      # Closes both ends. Idempotent.
      def close
        @input.close unless @input.closed?
        @output.close unless @output.closed?
        nil
      end

      def closed?
        @input.closed?
      end

      private

      def attach(selector)
        @fiber = Fiber.new { drain_while_open(selector) }
        @fiber.transfer
      rescue Exception # rubocop:disable Lint/RescueException
        close
        raise
      end

      # The attached fiber's life: wait, drain, until the pipe is closed.
      def drain_while_open(selector)
        until closed?
          begin
            clear if selector.io_wait(@fiber, @input, ::IO::READABLE)
          rescue IOError
            break if closed? # Closed while waiting: the fiber just ends.

            raise
          end
        end
      end
    end

    private_constant :Interrupt
  end
end
