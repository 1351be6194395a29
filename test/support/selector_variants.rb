# frozen_string_literal: true

# The selector configurations a contract test runs against: each defines one
# Minitest class per variant, so a missing class shows up as a visible skip.
#
#   SelectorVariants.define(Object, "IOContract", IOContract)
#
# defines IOContractURingTest, IOContractURingLegacyTest, IOContractEPollTest and
# IOContractSelectTest, each including the module. Inside a test:
#
#   selector_class        # the class, or skip when it is not defined
#   new_selector(loop)    # an instance, built with the variant's environment
#   require_selector_method(:io_pread)  # skip when the class lacks it
module SelectorVariants
  Variant = Struct.new(:name, :class_name, :env)

  VARIANTS = [
    Variant.new("URing", "URing", {}),
    # IO_EVENT_URING_LEGACY is read by URing.new: the ring is set up as on an old
    # kernel (no SINGLE_ISSUER/DEFER_TASKRUN, timeout SQE instead of EXT_ARG).
    Variant.new("URingLegacy", "URing", {"IO_EVENT_URING_LEGACY" => "1"}),
    Variant.new("EPoll", "EPoll", {}),
    Variant.new("Select", "Select", {}),
  ].freeze

  def self.define(namespace, prefix, contract)
    VARIANTS.each do |variant|
      klass = Class.new(Minitest::Test) do
        include contract

        define_method(:selector_variant) { variant }
      end
      namespace.const_set("#{prefix}#{variant.name}Test", klass)
    end
  end

  # Build a selector of `variant` with its environment set around `new`.
  def self.build(variant, loop)
    klass = IO::Event::Selector.const_get(variant.class_name, false)
    saved = variant.env.to_h { |key, _| [key, ENV[key]] }
    begin
      variant.env.each { |key, value| ENV[key] = value }
      klass.new(loop)
    ensure
      saved.each { |key, value| ENV[key] = value }
    end
  end

  def self.available?(variant)
    IO::Event::Selector.const_defined?(variant.class_name, false)
  end

  def selector_class
    variant = selector_variant
    unless SelectorVariants.available?(variant)
      skip "IO::Event::Selector::#{variant.class_name} is not defined in this build"
    end
    IO::Event::Selector.const_get(variant.class_name, false)
  end

  def new_selector(loop = Fiber.current)
    selector_class
    SelectorVariants.build(selector_variant, loop)
  end

  def require_selector_method(*names)
    klass = selector_class
    names.each do |name|
      skip "#{klass} does not implement ##{name}" unless klass.method_defined?(name)
    end
  end
end

# Drives a selector by hand, the way a scheduler does: the test method runs on
# the loop fiber, `start` runs a block in a new fiber at once (until it parks),
# `drive` calls select until a condition holds. Exceptions raised in started
# fibers (failed assertions included) are re-raised on the loop fiber.
module SelectorDriver
  def setup
    super
    @loop = Fiber.current
    @fiber_errors = []
    @selector = new_selector(@loop)
  end

  def teardown
    @selector&.close
    super
  end

  attr_reader :selector

  def monotonic
    Process.clock_gettime(Process::CLOCK_MONOTONIC)
  end

  def start(&block)
    fiber = Fiber.new do
      block.call
    rescue Exception => error # rubocop:disable Lint/RescueException
      @fiber_errors << error
    end
    fiber.transfer
    fiber
  end

  def raise_fiber_errors
    error = @fiber_errors.shift
    raise error if error
  end

  # Call select until the block returns true, at most `timeout` seconds.
  def drive(timeout: 5, quantum: 0.05)
    deadline = monotonic + timeout
    until yield
      raise_fiber_errors
      flunk "condition not reached after #{timeout}s of select" if monotonic > deadline
      @selector.select(quantum)
    end
    raise_fiber_errors
  end

  # Call select until every fiber has finished.
  def drive_fibers(*fibers, timeout: 5)
    drive(timeout: timeout) { fibers.none?(&:alive?) }
  end

  # `normal` repetitions, or `stressed` when GC.stress is on (GC_STRESS=1
  # makes every allocation collect; large loops would only hit the watchdog).
  def scaled(normal, stressed)
    GC.stress ? stressed : normal
  end

  # A few short rounds of select, for "nothing else happens" assertions.
  def settle(rounds = 3, duration = 0.01)
    rounds.times { @selector.select(duration) }
    raise_fiber_errors
  end
end
