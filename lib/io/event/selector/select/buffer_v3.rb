# frozen_string_literal: true

class IO
  module Event
    module Selector
      class Select
        # Moving bytes on Ruby 3.3+: IO::Buffer takes an offset, and a length
        # of 0 means exactly one system call of up to buffer.size - offset
        # bytes. Same interface as BufferV1.
        module BufferV3
          private

          def read_once(io, buffer, offset, _maximum)
            buffer.read(io, 0, offset)
          end

          def write_once(io, buffer, offset, _maximum)
            buffer.write(io, 0, offset)
          end

          def pread_once(io, buffer, from, offset, _maximum)
            buffer.pread(io, from, 0, offset)
          end

          def pwrite_once(io, buffer, from, offset, _maximum)
            buffer.pwrite(io, from, 0, offset)
          end
        end
        private_constant :BufferV3
      end
    end
  end
end
