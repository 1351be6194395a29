# frozen_string_literal: true

require "rbconfig"

require_relative "implementation"
require_relative "selector"

# Loads the compiled selectors: EPoll, and URing when io_uring works here.
# IO_EVENT_URING_DISABLE=1 leaves URing undefined, as on a kernel without it.
# The library is built per Ruby ABI (see ext/extconf.rb); without it, the
# pure-Ruby Select selector is all there is.
begin
  require "io_event_uring/#{RbConfig::CONFIG["ruby_version"]}/io_event_uring"
rescue LoadError => error
  warn "io-event-uring: native selectors unavailable (#{error.message}); using IO::Event::Selector::Select"
end

# Mark the native classes as ours (see implementation.rb).
%i[URing EPoll].each do |name|
  next unless IO::Event::Selector.const_defined?(name, false)

  klass = IO::Event::Selector.const_get(name, false)
  klass.const_set(:IMPLEMENTATION, IO::Event::IMPLEMENTATION) unless klass.const_defined?(:IMPLEMENTATION, false)
end
