# frozen_string_literal: true

require_relative "../../../test_helper"
require_relative "../../../support/selector_contract"

module URingAvailability
  def setup
    unless defined?(IO::Event::Selector::URing)
      reason =
        if ENV["IO_EVENT_URING_DISABLE"] == "1"
          "IO_EVENT_URING_DISABLE=1 is set"
        else
          "io_uring unavailable here, or the native extension is not built"
        end
      skip "IO::Event::Selector::URing is not defined in this process (#{reason})"
    end
    super
  end

  def selector_class
    IO::Event::Selector::URing
  end
end

# The selector contract against the io_uring selector, with the ring set up as
# on a current kernel (SINGLE_ISSUER, DEFER_TASKRUN, EXT_ARG waits).
class URingSelectorTest < Minitest::Test
  include SelectorContract
  include URingAvailability
end

# The same contract with IO_EVENT_URING_LEGACY=1 around URing.new: the ring is
# set up as on an old kernel (no SINGLE_ISSUER/DEFER_TASKRUN/TASKRUN_FLAG/
# SUBMIT_ALL, a timeout SQE instead of EXT_ARG).
class URingLegacySelectorTest < Minitest::Test
  include SelectorContract
  include URingAvailability

  def new_selector(loop)
    saved = ENV["IO_EVENT_URING_LEGACY"]
    ENV["IO_EVENT_URING_LEGACY"] = "1"
    begin
      selector_class.new(loop)
    ensure
      if saved.nil?
        ENV.delete("IO_EVENT_URING_LEGACY")
      else
        ENV["IO_EVENT_URING_LEGACY"] = saved
      end
    end
  end
end
