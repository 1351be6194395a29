# frozen_string_literal: true

# Two implementations answer `require "io/event"`: the io-event gem (C) and
# this one (Rust). They define the same classes, so only one may be loaded
# in a process. This file runs before anything of ours defines a selector: it
# refuses to load over the C one, and marks what it loads as ours.

class IO
  module Event
    foreign =
      $LOADED_FEATURES.find { |feature| File.basename(feature, ".*") == "IO_Event" } ||
      (const_defined?(:Selector, false) && !const_defined?(:IMPLEMENTATION, false) && "IO::Event::Selector")
    if foreign
      raise LoadError, "io-event-uring: the io-event gem's IO::Event is already loaded (#{foreign}); " \
                       "one process can use only one of them. Under Bundler, let this repository " \
                       "satisfy io-event: gem \"io-event\", path: \"...\" (see README.md)"
    end

    # Which implementation of io/event this process runs: "io-event-uring".
    # The io-event gem defines no such constant, so
    #   defined?(IO::Event::IMPLEMENTATION) ? IO::Event::IMPLEMENTATION : "io-event"
    # tells them apart. Every selector class of ours carries the same
    # constant, so IO::Event::Selector.default::IMPLEMENTATION says it too.
    IMPLEMENTATION = "io-event-uring"
  end
end
