# frozen_string_literal: true

require_relative "../../../test_helper"
require_relative "../../../support/selector_contract"

begin
  require "io/event/debug/selector"
rescue LoadError
  # Reported as a skip by each test class below.
end

# The selector contract against IO::Event::Debug::Selector wrapping each
# selector class, so the wrapper forwards every part of the protocol faithfully.
module DebugSelectorContract
  include SelectorContract

  def setup
    unless defined?(IO::Event::Debug::Selector)
      skip "IO::Event::Debug::Selector is not defined (lib/io/event/debug/selector.rb missing)"
    end
    unless IO::Event::Selector.const_defined?(inner_class_name, false)
      skip "IO::Event::Selector::#{inner_class_name} is not defined in this process, nothing to wrap"
    end
    super
  end

  def selector_class
    IO::Event::Debug::Selector
  end

  def new_selector(loop)
    inner = IO::Event::Selector.const_get(inner_class_name, false).new(loop)
    IO::Event::Debug::Selector.new(inner)
  end
end

%w[URing EPoll Select].each do |name|
  klass = Class.new(Minitest::Test) do
    include DebugSelectorContract

    define_method(:inner_class_name) { name }
  end
  Object.const_set("Debug#{name}SelectorTest", klass)
end
