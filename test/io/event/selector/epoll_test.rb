# frozen_string_literal: true

require_relative "../../../test_helper"
require_relative "../../../support/selector_contract"

# The selector contract against the native epoll selector.
class EPollSelectorTest < Minitest::Test
  include SelectorContract

  def setup
    unless defined?(IO::Event::Selector::EPoll)
      skip "IO::Event::Selector::EPoll is not defined in this process (native extension not built or not loaded)"
    end
    super
  end

  def selector_class
    IO::Event::Selector::EPoll
  end
end
