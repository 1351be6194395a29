# frozen_string_literal: true

# The behaviour every selector must share (see PROTOCOL.md, "Every selector
# instance"), one module per section under support/contract/. SelectorContract
# includes them all; SelectorVariants.define runs it against each variant
# (io/event/selector/contract_test.rb). A test class may include one section,
# or only SelectorContract::Helpers for its own tests.
#
# Each test builds its own selector on `Fiber.current` (the test's root fiber is
# the event loop) and teardown closes it. Fibers under test are entered with
# `transfer`, as a scheduler does, so they can be parked and switched freely.

require_relative "contract/helpers"
require_relative "contract/select"
require_relative "contract/fibers"
require_relative "contract/io_wait"
require_relative "contract/cancelled_waits"
require_relative "contract/lifecycle"

module SelectorContract
  include Select
  include Fibers
  include IOWait
  include CancelledWaits
  include Lifecycle
end
