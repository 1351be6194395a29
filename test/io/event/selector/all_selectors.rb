# frozen_string_literal: true

require_relative "../../../support/selector_variants"

# Every selector configuration a behaviour test should cover: each variant of
# SelectorVariants (URing, URing legacy, EPoll, Select), plain and wrapped in
# IO::Event::Debug::Selector.
#
#   AllSelectors.define("PendingInterrupt", PendingInterruptContract)
#
# defines PendingInterruptURingTest ... PendingInterruptDebugSelectTest. Inside
# a test, new_selector(loop) builds the configuration (skipping when its class
# is not defined in this build) and SelectorDriver's helpers are available.
module AllSelectors
  def self.define(prefix, contract)
    [nil, "Debug"].each do |wrapper|
      SelectorVariants::VARIANTS.each do |variant|
        klass = Class.new(Minitest::Test) do
          include SelectorVariants
          include SelectorDriver
          include AllSelectors
          include contract

          define_method(:selector_variant) { variant }
          define_method(:debug_wrapper?) { !wrapper.nil? }
        end
        Object.const_set("#{prefix}#{wrapper}#{variant.name}Test", klass)
      end
    end
  end

  def new_selector(loop = Fiber.current)
    selector = super
    return selector unless debug_wrapper?

    begin
      IO::Event::Debug::Selector.new(selector)
    rescue Exception # rubocop:disable Lint/RescueException
      selector.close
      raise
    end
  end

  # Runs the block in a forked child and returns its value (which must
  # survive Marshal). A block that hangs or crashes fails the test instead of
  # the whole run; the child leaves with exit!, so neither its threads nor
  # minitest's at_exit hooks can hold it up.
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
