# frozen_string_literal: true

class IO
  module Event
    module Selector
      class Select
        # Moving bytes on Ruby 3.1: IO::Buffer#read/#write take no offset, and
        # #read/#pread fill the whole buffer whatever length says. Slices would
        # give the offset, but 3.1 frees a slice of IO::Buffer.for(string) by
        # unlocking that string a second time, which crashes the GC; so at
        # offset 0 (the usual case) the buffer is used directly, and elsewhere
        # through a scratch buffer that is copied.
        #
        # Each method makes one attempt of at most +maximum+ bytes at +offset+
        # and returns the byte count or a negative errno.
        module BufferV1
          private

          def read_once(io, buffer, offset, maximum)
            return buffer.read(io, maximum) if offset.zero?

            scratch = IO::Buffer.new(maximum)
            result = scratch.read(io, maximum)
            buffer.copy(scratch, offset, result) if result.positive?
            result
          ensure
            scratch&.free
          end

          def write_once(io, buffer, offset, maximum)
            return buffer.write(io, maximum) if offset.zero?

            scratch = IO::Buffer.new(maximum)
            scratch.copy(buffer, 0, maximum, offset)
            scratch.write(io, maximum)
          ensure
            scratch&.free
          end

          def pread_once(io, buffer, from, offset, maximum)
            return buffer.pread(io, maximum, from) if offset.zero?

            scratch = IO::Buffer.new(maximum)
            result = scratch.pread(io, maximum, from)
            buffer.copy(scratch, offset, result) if result.positive?
            result
          ensure
            scratch&.free
          end

          def pwrite_once(io, buffer, from, offset, maximum)
            return buffer.pwrite(io, maximum, from) if offset.zero?

            scratch = IO::Buffer.new(maximum)
            scratch.copy(buffer, 0, maximum, offset)
            scratch.pwrite(io, maximum, from)
          ensure
            scratch&.free
          end
        end
        private_constant :BufferV1
      end
    end
  end
end
