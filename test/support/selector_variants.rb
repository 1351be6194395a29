# frozen_string_literal: true

# The one table of selector configurations the tests run against: URing,
# URing with a legacy ring, EPoll and Select, each plain and wrapped in
# IO::Event::Debug::Selector ("DebugURing" ...). `define` makes one Minitest
# class per variant, so a variant this build lacks (URing on a kernel without
# io_uring, say) shows up as a visible skip, never as a missing class.
#
#   SelectorVariants.define("IOContract", IOContract, variants: SelectorVariants::PLAIN)
#
# defines IOContractURingTest, IOContractURingLegacyTest, IOContractEPollTest and
# IOContractSelectTest, each including SelectorVariants and the module. Inside a test:
#
#   selector_class        # the backend class, or skip when it is not defined
#   new_selector(loop)    # an instance, built with the variant's environment
#                         # (and wrapped in the Debug selector for Debug variants)
#   require_selector_method(:io_pread)  # skip when the backend lacks it
module SelectorVariants
  Variant = Struct.new(:name, :class_name, :env, :debug) do
    alias_method :debug?, :debug

    def to_s
      name
    end
  end

  PLAIN = [
    Variant.new("URing", "URing", {}, false),
    # IO_EVENT_URING_LEGACY is read by URing.new: the ring is set up as on an old
    # kernel (no SINGLE_ISSUER/DEFER_TASKRUN, timeout SQE instead of EXT_ARG).
    Variant.new("URingLegacy", "URing", {"IO_EVENT_URING_LEGACY" => "1"}, false),
    Variant.new("EPoll", "EPoll", {}, false),
    Variant.new("Select", "Select", {}, false),
  ].freeze

  # The native selectors (URing, URing legacy, EPoll): not the pure-Ruby Select.
  NATIVE = PLAIN.reject { |variant| variant.class_name == "Select" }.freeze

  # The same configurations behind IO::Event::Debug::Selector.
  DEBUG = PLAIN.map { |variant| Variant.new("Debug#{variant.name}", variant.class_name, variant.env, true) }.freeze

  VARIANTS = (PLAIN + DEBUG).freeze

  def self.fetch(name)
    VARIANTS.find { |variant| variant.name == name } or raise KeyError, "no selector variant #{name}"
  end

  # Every variant but the named ones.
  def self.except(*names)
    VARIANTS.reject { |variant| names.include?(variant.name) }
  end

  # Defines "#{prefix}#{variant.name}#{suffix}" under Object for each variant.
  def self.define(prefix, contract, variants: VARIANTS, suffix: "Test")
    variants.each do |variant|
      klass = Class.new(Minitest::Test) do
        include SelectorVariants
        include contract

        define_method(:selector_variant) { variant }
      end
      Object.const_set("#{prefix}#{variant.name}#{suffix}", klass)
    end
  end

  def self.debug_selector_class
    require "io/event/debug/selector" unless defined?(IO::Event::Debug::Selector)
    IO::Event::Debug::Selector
  rescue LoadError
    nil
  end

  # Why `variant` cannot run in this process, or nil when it can.
  def self.missing(variant)
    unless IO::Event::Selector.const_defined?(variant.class_name, false)
      reason =
        if variant.class_name == "URing"
          ENV["IO_EVENT_URING_DISABLE"] == "1" ? "IO_EVENT_URING_DISABLE=1 is set" : "io_uring unavailable here, or the native extension is not built"
        else
          "the native extension is not built or not loaded"
        end
      return "IO::Event::Selector::#{variant.class_name} is not defined in this process (#{reason})"
    end
    if variant.debug? && debug_selector_class.nil?
      "IO::Event::Debug::Selector is not defined (lib/io/event/debug/selector.rb missing)"
    end
  end

  def self.available?(variant)
    missing(variant).nil?
  end

  # Build a selector of `variant` with its environment set around `new`
  # (`arguments` are passed to `new` as they are: the loop, or anything else
  # for the argument checks), wrapped in the Debug selector for Debug variants.
  def self.build(variant, *arguments)
    klass = IO::Event::Selector.const_get(variant.class_name, false)
    selector = with_env(variant.env) { klass.new(*arguments) }
    return selector unless variant.debug?

    begin
      debug_selector_class.new(selector)
    rescue Exception # rubocop:disable Lint/RescueException
      selector.close
      raise
    end
  end

  def self.with_env(env)
    saved = env.to_h { |key, _| [key, ENV[key]] }
    begin
      env.each { |key, value| ENV[key] = value }
      yield
    ensure
      saved.each { |key, value| ENV[key] = value }
    end
  end

  # The backend class of this variant (the wrapped one for Debug variants).
  def selector_class
    variant = selector_variant
    reason = SelectorVariants.missing(variant)
    skip reason if reason
    IO::Event::Selector.const_get(variant.class_name, false)
  end

  def new_selector(loop = Fiber.current)
    selector_class
    SelectorVariants.build(selector_variant, loop)
  end

  def debug_wrapper?
    selector_variant.debug?
  end

  def require_selector_method(*names)
    klass = selector_class
    names.each do |name|
      skip "#{klass} does not implement ##{name}" unless klass.method_defined?(name)
    end
  end
end

require_relative "selector_driver"
require_relative "forked_child"
