# frozen_string_literal: true

require "fcntl"

class IO
  module Event
    # Selector.nonblock, also loadable on its own (as io-event's
    # require "io/event/selector/nonblock").
    module Selector
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
    end
  end
end
