# frozen_string_literal: true

class IO
  module Event
    module Selector
      class Select
        # Moving bytes through strings, where IO::Buffer's own methods cannot
        # be relied on (Ruby 3.2, whose methods changed meaning between patch
        # releases). Same interface as BufferV1.
        #
        # The bytes go through a second IO object for the same descriptor: it
        # has no read or write buffer of its own, so nothing is taken from or
        # flushed into the caller's IO (whose buffer may be what is being
        # transferred). Errors come back as negative errnos, like IO::Buffer;
        # the wrong direction (the IO's mode) is EBADF, as read(2) says.
        module BufferStrings
          EAGAIN = -Errno::EAGAIN::Errno
          EBADF = -Errno::EBADF::Errno
          private_constant :EAGAIN, :EBADF

          private

          def read_once(io, buffer, offset, maximum)
            chunk = raw_io(io).read_nonblock(maximum, exception: false)
            return EAGAIN if chunk == :wait_readable
            return 0 if chunk.nil?

            buffer.set_string(chunk, offset)
            chunk.bytesize
          rescue SystemCallError => error
            -error.errno
          rescue IOError
            EBADF
          end

          def write_once(io, buffer, offset, maximum)
            result = raw_io(io).write_nonblock(buffer.get_string(offset, maximum), exception: false)
            result == :wait_writable ? EAGAIN : result
          rescue SystemCallError => error
            -error.errno
          rescue IOError
            EBADF
          end

          def pread_once(io, buffer, from, offset, maximum)
            chunk = raw_io(io).pread(maximum, from)
            buffer.set_string(chunk, offset)
            chunk.bytesize
          rescue EOFError
            0
          rescue SystemCallError => error
            -error.errno
          rescue IOError
            EBADF
          end

          def pwrite_once(io, buffer, from, offset, maximum)
            raw_io(io).pwrite(buffer.get_string(offset, maximum), from)
          rescue SystemCallError => error
            -error.errno
          rescue IOError
            EBADF
          end

          def raw_io(io)
            ::IO.for_fd(io.to_io.fileno, autoclose: false).tap(&:binmode)
          end
        end
        private_constant :BufferStrings
      end
    end
  end
end
