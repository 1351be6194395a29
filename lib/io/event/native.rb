# frozen_string_literal: true

# Loads the compiled selectors (URing when io_uring works here, and EPoll).
# IO_EVENT_URING_DISABLE=1 leaves URing undefined, as on a kernel without it.
begin
  require "io_event_uring"
rescue LoadError => error
  warn "io-event-uring: native selectors unavailable (#{error.message}); using IO::Event::Selector::Select", uplevel: 0
end
