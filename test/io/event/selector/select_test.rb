# frozen_string_literal: true

require_relative "../../../test_helper"
require_relative "../../../support/selector_contract"

# The selector contract against the pure-Ruby IO.select selector.
class SelectSelectorTest < Minitest::Test
  include SelectorContract

  def setup
    unless defined?(IO::Event::Selector::Select)
      skip "IO::Event::Selector::Select is not defined (lib/io/event/selector/select.rb not loaded)"
    end
    super
  end

  def selector_class
    IO::Event::Selector::Select
  end
end
