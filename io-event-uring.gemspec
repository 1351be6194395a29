# frozen_string_literal: true

require_relative "lib/io/event/version"

Gem::Specification.new do |spec|
  spec.name = "io-event-uring"
  spec.version = IO::Event::VERSION
  spec.summary = "io_uring and epoll selectors for Ruby fiber schedulers, in Rust"
  spec.description = <<~TEXT
    A drop-in for the io-event gem's selectors: `require "io/event"` gives
    IO::Event::Selector::URing (io_uring) or, where io_uring is missing,
    IO::Event::Selector::EPoll, with the io-event 1.x Ruby API, so schedulers
    such as async run on it unchanged. Builds with cargo at install time.
  TEXT
  spec.authors = ["io-event-uring developers"]
  spec.license = "MIT"
  spec.homepage = "https://example.invalid/io-event-uring"
  spec.required_ruby_version = ">= 3.1"

  spec.files = Dir.chdir(__dir__) do
    Dir[
      "Cargo.toml", "Cargo.lock", "rustfmt.toml", "README.md", "DESIGN.md",
      "ext/Cargo.toml", "ext/build.rs", "ext/extconf.rb", "ext/src/**/*.rs",
      "lib/**/*.rb"
    ]
  end
  spec.require_paths = ["lib"]
  spec.extensions = ["ext/extconf.rb"]
end
