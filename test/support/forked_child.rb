# frozen_string_literal: true

# Runs a block in a forked child and returns its value (which must survive
# Marshal). A block that hangs, raises or crashes fails the test instead of
# the whole run; the child leaves with exit!, so neither its threads nor
# minitest's at_exit hooks can hold it up. (The soundness suite has a richer
# harness, Soundness::Helpers#isolated, with progress steps and stderr.)
module ForkedChild
  def in_child(timeout: 10, &block)
    reader, writer = IO.pipe
    pid = fork do
      reader.close
      outcome =
        begin
          [:ok, block.call]
        rescue Exception => error # rubocop:disable Lint/RescueException
          [:error, "#{error.class}: #{error.message}\n#{Array(error.backtrace).first(8).join("\n")}"]
        end
      writer.write(Marshal.dump(outcome))
      writer.close
      exit!(0)
    end
    writer.close
    data = read_child(reader, pid, timeout)
    kind, value = Marshal.load(data) # rubocop:disable Security/MarshalLoad
    flunk "the child raised #{value}" if kind == :error
    value
  ensure
    reader&.close
    writer&.close unless writer&.closed?
  end

  private

  def read_child(reader, pid, timeout)
    ready = IO.select([reader], nil, nil, timeout)
    unless ready
      Process.kill(:KILL, pid)
      Process.wait(pid)
      flunk "the child did not finish within #{timeout}s (hung)"
    end
    data = reader.read
    _, status = Process.wait2(pid)
    flunk "the child died: #{status.inspect}" if data.empty?
    data
  end
end
