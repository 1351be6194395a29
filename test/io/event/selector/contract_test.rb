# frozen_string_literal: true

require_relative "../../../test_helper"
require_relative "../../../support/selector_contract"

# The selector contract against every variant of the table:
# URingSelectorTest, URingLegacySelectorTest, EPollSelectorTest,
# SelectSelectorTest, and DebugURingSelectorTest, DebugEPollSelectorTest,
# DebugSelectSelectorTest (IO::Event::Debug::Selector must forward every part
# of the protocol faithfully). The legacy ring under the Debug wrapper is left
# out, as before the table was shared: the wrapper forwards the same way
# whatever ring is behind it.
SelectorVariants.define("", SelectorContract, variants: SelectorVariants.except("DebugURingLegacy"), suffix: "SelectorTest")
