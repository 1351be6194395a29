# frozen_string_literal: true

require "rbconfig"

# Loads the compiled selectors: EPoll, and URing when io_uring works here.
# IO_EVENT_URING_DISABLE=1 leaves URing undefined, as on a kernel without it.
# The library is built per Ruby ABI (see ext/extconf.rb); without it, the
# pure-Ruby Select selector is all there is.
begin
  require "io_event_uring/#{RbConfig::CONFIG["ruby_version"]}/io_event_uring"
rescue LoadError => error
  warn "io-event-uring: native selectors unavailable (#{error.message}); using IO::Event::Selector::Select"
end
