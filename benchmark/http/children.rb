# frozen_string_literal: true

# Child processes of `rake bench` and reading their output with time limits.

module BenchmarkRun
  ROOT = File.expand_path("../..", __dir__)

  class Failure < StandardError; end

  # Every child process started here, so that all of them are stopped on the way out.
  module Children
    @pids = []

    class << self
      def spawn(*command, **options)
        pid = Process.spawn(*command, **options)
        @pids << pid
        pid
      end

      # Waits up to +timeout+ seconds; returns the Process::Status, or nil if still running.
      def wait(pid, timeout)
        deadline = now + timeout
        loop do
          _, status = Process.waitpid2(pid, Process::WNOHANG)
          if status
            @pids.delete(pid)
            return status
          end
          return nil if now >= deadline

          sleep 0.02
        end
      rescue Errno::ECHILD
        @pids.delete(pid)
        nil
      end

      # SIGTERM, then SIGKILL if it has not gone after +grace+ seconds.
      def stop(pid, grace = 5)
        signal(pid, "TERM")
        status = wait(pid, grace)
        return status if status

        signal(pid, "KILL")
        wait(pid, 2)
      end

      def stop_all
        @pids.dup.each { |pid| stop(pid, 2) }
      end

      def signal(pid, name)
        Process.kill(name, pid)
      rescue Errno::ESRCH
        nil
      end

      def now
        Process.clock_gettime(Process::CLOCK_MONOTONIC)
      end
    end
  end

  module_function

  def now
    Process.clock_gettime(Process::CLOCK_MONOTONIC)
  end

  def which(name)
    ENV.fetch("PATH", "").split(File::PATH_SEPARATOR).map { |dir| File.join(dir, name) }
       .find { |path| File.file?(path) && File.executable?(path) }
  end

  def read_line(io, timeout)
    line = +""
    deadline = now + timeout
    until line.end_with?("\n")
      remaining = deadline - now
      return (line.empty? ? nil : line) if remaining <= 0 || !io.wait_readable(remaining)

      chunk = io.read_nonblock(1, exception: false)
      return (line.empty? ? nil : line) if chunk.nil?
      next if chunk == :wait_readable

      line << chunk
    end
    line
  end

  # Everything +io+ gives until EOF or +timeout+ seconds; yields each chunk as it comes.
  def read_until_eof(io, timeout)
    output = +""
    deadline = now + timeout
    while (remaining = deadline - now).positive? && io.wait_readable(remaining)
      chunk = io.read_nonblock(65_536, exception: false)
      break if chunk.nil?
      next if chunk == :wait_readable

      yield chunk if block_given?
      output << chunk
    end
    output
  end

  def read_available(io)
    text = +""
    loop do
      chunk = io.read_nonblock(4096, exception: false)
      break if chunk.nil? || chunk == :wait_readable

      text << chunk
    end
    text
  end
end
