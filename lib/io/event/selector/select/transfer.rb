# frozen_string_literal: true

require_relative "../../support"
require_relative "buffer_v1"
require_relative "buffer_v3"
require_relative "buffer_strings"

class IO
  module Event
    module Selector
      class Select
        # io_read, io_write, io_pread and io_pwrite: one loop that reads or
        # writes until at least +length+ bytes moved, waiting for readiness in
        # between, over the byte-moving strategy that suits this Ruby
        # (BufferV1, BufferV3 or BufferStrings; see Support.buffer_io).
        module Transfer
          # (EAGAIN and EWOULDBLOCK are Select's.)
          EINVAL = -Errno::EINVAL::Errno
          private_constant :EINVAL

          include(
            case Support.buffer_io
            when :v1 then BufferV1
            when :v3 then BufferV3
            else BufferStrings
            end
          )

          # Reads into +buffer+ at +offset+ until at least +length+ bytes arrived
          # (+length+ 0: one read of whatever is there), EOF, or an error.
          # Returns the byte count, or a negative errno if nothing was read.
          def io_read(fiber, io, buffer, length, offset = 0)
            transfer_loop(fiber, io, buffer, length, offset, IO::READABLE) do |at, maximum|
              read_once(io, buffer, at, maximum)
            end
          end

          # The mirror of #io_read.
          def io_write(fiber, io, buffer, length, offset = 0)
            transfer_loop(fiber, io, buffer, length, offset, IO::WRITABLE) do |at, maximum|
              write_once(io, buffer, at, maximum)
            end
          end

          if Support.buffer_pread?
            # #io_read at file position +from+ (pread), leaving the IO's own
            # position alone.
            def io_pread(fiber, io, buffer, from, length, offset)
              integer!(from, "from")
              transfer_loop(fiber, io, buffer, length, offset, IO::READABLE) do |at, maximum, done|
                pread_once(io, buffer, from + done, at, maximum)
              end
            end

            # #io_write at file position +from+ (pwrite).
            def io_pwrite(fiber, io, buffer, from, length, offset)
              integer!(from, "from")
              transfer_loop(fiber, io, buffer, length, offset, IO::WRITABLE) do |at, maximum, done|
                pwrite_once(io, buffer, from + done, at, maximum)
              end
            end
          end

          private

          # At least +length+ bytes (or one attempt when +length+ is 0), waiting
          # for readiness on EAGAIN. An +offset+ past the end is -EINVAL; at the
          # end there is nothing to move, so the IO is not touched (it may even
          # be closed) and the answer is 0.
          def transfer_loop(fiber, io, buffer, length, offset, event)
            check_open!
            Kernel.raise TypeError, "expected an IO, not #{io.class}" unless io.respond_to?(:to_io)
            unless buffer.is_a?(IO::Buffer)
              Kernel.raise TypeError, "expected an IO::Buffer, not #{buffer.class}"
            end
            integer!(length, "length")
            integer!(offset, "offset")
            Kernel.raise ArgumentError, "negative length #{length}" if length.negative?
            Kernel.raise ArgumentError, "negative offset #{offset}" if offset.negative?

            size = buffer.size
            return EINVAL if offset > size
            return 0 if offset == size

            total = 0
            Selector.nonblock(io) do
              while offset < size
                result = Support.blocking { yield(offset, size - offset, total) }

                if result.negative?
                  if again?(result) && length.positive? && total < length
                    io_wait(fiber, io, event)
                    next
                  end
                  total = result if total.zero?
                  break
                end

                break if result.zero? # EOF (or a zero-length write)

                total += result
                offset += result
                break if total >= length
              end
            end
            total
          end

          def again?(result)
            result == EAGAIN || result == EWOULDBLOCK
          end
        end
        private_constant :Transfer
      end
    end
  end
end
