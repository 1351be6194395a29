# frozen_string_literal: true

# The same gem under the name "io-event", so that a bundle whose gems depend
# on io-event (async does) can take it from this repository instead of the
# C gem:
#
#   gem "io-event", path: "/path/to/io-event-uring"
#
# Bundler does not compile path gems: build the extension first (rake
# compile); without it, only the pure-Ruby Select selector is there.
spec = Gem::Specification.load(File.expand_path("io-event-uring.gemspec", __dir__)).dup
spec.name = "io-event"
spec.summary = "io-event's selectors (io_uring, epoll) in Rust: io-event-uring under the io-event name"
spec
