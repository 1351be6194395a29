# frozen_string_literal: true

class IO
  module Event
    # Feature checks for the running Ruby, so the pure-Ruby parts can pick the
    # right API on 3.1 (the machine's Ruby) and on 3.2+.
    module Support
      # Whether IO::Buffer exists (3.1+). The scheduler io_read/io_write hooks
      # are only called with one when it does.
      def self.buffer?
        IO.const_defined?(:Buffer)
      end

      # Whether Fiber.blocking { } exists (3.2+).
      def self.fiber_blocking?
        Fiber.respond_to?(:blocking)
      end

      # How IO::Buffer moves bytes to and from an IO on this Ruby:
      # - :v1 (3.1): read(io, length) / write(io, length) with no offset, read
      #   fills the whole buffer whatever length says, and
      #   pread(io, length, from) / pwrite(io, length, from) take the file
      #   position last;
      # - :v3 (3.3+): read(io, length, offset), pread(io, from, length, offset),
      #   length being a minimum, and 0 meaning exactly one system call;
      # - :copy (3.2, whose methods changed meaning between patch releases):
      #   not dependable, so go through strings instead;
      # - nil: no IO::Buffer.
      def self.buffer_io
        return nil unless buffer?
        return :v1 if IO::Buffer.instance_method(:read).arity == 2

        (RUBY_VERSION.split(".").map(&:to_i) <=> [3, 3]) >= 0 ? :v3 : :copy
      end

      # Whether IO::Buffer can do positional reads and writes.
      def self.buffer_pread?
        buffer? && IO::Buffer.method_defined?(:pread) && IO::Buffer.method_defined?(:pwrite)
      end

      # Runs the block with the fiber scheduler hooks switched off for the
      # current fiber, so a selector's own read(2)/write(2) calls (and the
      # debug log) do not re-enter the scheduler that called it. On 3.1, which
      # lacks Fiber.blocking, the block runs in a short-lived blocking fiber
      # when the current fiber is non-blocking under a scheduler. The block
      # must not use `return`.
      def self.blocking(&block)
        if fiber_blocking?
          Fiber.blocking(&block)
        elsif Fiber.blocking? || Fiber.scheduler.nil?
          yield
        else
          Fiber.new(blocking: true, &block).resume
        end
      end
    end
  end
end
