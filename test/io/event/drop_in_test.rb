# frozen_string_literal: true

require_relative "../../test_helper"
require "open3"
require "rbconfig"
require "tmpdir"
require "fileutils"

# io-event-uring in place of the io-event gem: the same require paths, the
# version it matches, a constant that tells which implementation is loaded,
# a refusal to load over the C gem, and a bundle that takes its io-event from
# this repository (README.md, "In place of io-event under Bundler").
class DropInTest < Minitest::Test
  ROOT = File.expand_path("../../..", __dir__)
  LIB = File.join(ROOT, "lib")

  # Every file under io-event 1.19.4's lib/, as a require path.
  IO_EVENT_REQUIRE_PATHS = %w[
    io/event
    io/event/version
    io/event/support
    io/event/native
    io/event/selector
    io/event/selector/select
    io/event/selector/nonblock
    io/event/debug/selector
    io/event/interrupt
    io/event/priority_heap
    io/event/timers
  ].freeze

  # Runs Ruby in a fresh process with this repository's lib/ first.
  def ruby(*arguments, env: {})
    Open3.capture3(env, RbConfig.ruby, "-W0", "-I", LIB, *arguments)
  end

  def test_every_io_event_require_path_loads_on_its_own
    IO_EVENT_REQUIRE_PATHS.each do |path|
      output, error, status = ruby("-e", "require #{path.dump}; print :loaded")
      assert status.success?, "require #{path.inspect} failed: #{error}"
      assert_equal "loaded", output, path
    end
  end

  def test_nonblock_require_path_defines_selector_nonblock
    script = <<~RUBY
      require "io/event/selector/nonblock"
      input, output = IO.pipe
      input.nonblock = false
      inside = IO::Event::Selector.nonblock(input) { input.nonblock? }
      print [inside, input.nonblock?].inspect
    RUBY
    output, error, status = ruby("-rio/nonblock", "-e", script)
    assert status.success?, error
    assert_equal "[true, false]", output
  end

  def test_version_is_the_io_event_release_it_matches
    assert_equal "1.19.4", IO::Event::VERSION
  end

  def test_implementation_constant_names_this_library_on_every_selector_class
    assert_equal "io-event-uring", IO::Event::IMPLEMENTATION
    assert_predicate IO::Event::IMPLEMENTATION, :frozen?
    IOEventTestHelper.selector_classes.each do |klass|
      assert_equal "io-event-uring", klass::IMPLEMENTATION, klass.name
    end
    assert_equal "io-event-uring", IO::Event::Selector.default::IMPLEMENTATION
  end

  def test_refuses_to_load_over_another_io_event
    [
      "module IO::Event; module Selector; end; end",
      "$LOADED_FEATURES << '/gems/io-event-1.19.4/lib/IO_Event.so'",
    ].each do |foreign|
      _, error, status = ruby("-e", "#{foreign}; require 'io/event'")
      refute status.success?, "loaded over: #{foreign}"
      assert_match(/LoadError/, error)
      assert_match(/already loaded.*gem "io-event", path:/m, error)
    end
  end

  # --- Bundler ------------------------------------------------------------------

  def bundle
    @bundle ||= ENV.fetch("PATH", "").split(File::PATH_SEPARATOR).map { |dir| File.join(dir, "bundle") }
      .find { |path| File.executable?(path) }
    skip "no bundle executable (Debian package bundler; bin/setup installs it)" unless @bundle
    @bundle
  end

  # A stand-in for async: a path gem that depends on io-event as async does.
  def write_fake_async(dir)
    FileUtils.mkdir_p(File.join(dir, "lib"))
    File.write(File.join(dir, "async.gemspec"), <<~RUBY)
      Gem::Specification.new do |spec|
        spec.name = "async"
        spec.version = "2.99.0"
        spec.summary = "A stand-in for async: depends on io-event"
        spec.authors = ["io-event-uring tests"]
        spec.files = ["lib/async.rb"]
        spec.add_dependency "io-event", "~> 1.9"
      end
    RUBY
    File.write(File.join(dir, "lib", "async.rb"), <<~RUBY)
      require "io/event"
      module Async
        def self.selector
          IO::Event::Selector.new(Fiber.current)
        end
      end
    RUBY
  end

  def run_bundle(app, *arguments)
    env = {
      "BUNDLE_GEMFILE" => File.join(app, "Gemfile"),
      "HOME" => app, # Bundler's own settings and cache stay in the temp dir
      "BUNDLE_USER_HOME" => File.join(app, ".bundle-home"),
      "BUNDLE_FROZEN" => nil, "BUNDLE_DEPLOYMENT" => nil, "BUNDLE_PATH" => nil, "BUNDLE_WITHOUT" => nil,
      "RUBYOPT" => nil, "RUBYLIB" => nil,
    }
    Open3.capture3(env, bundle, *arguments, chdir: app)
  end

  def test_a_bundle_gets_io_event_from_this_repository
    bundle
    Dir.mktmpdir("io-event-uring-bundle") do |dir|
      write_fake_async(File.join(dir, "async"))
      app = File.join(dir, "app")
      FileUtils.mkdir_p(app)
      File.write(File.join(app, "Gemfile"), <<~RUBY)
        gem "async", path: "../async"
        gem "io-event", path: #{ROOT.dump}
      RUBY

      output, error, status = run_bundle(app, "install", "--local")
      assert status.success?, "bundle install --local failed:\n#{output}\n#{error}"
      lock = File.read(File.join(app, "Gemfile.lock"))
      assert_match(/^    io-event \(1\.19\.4\)$/, lock)

      script = <<~RUBY
        require "async"
        selector = Async.selector
        puts IO::Event::IMPLEMENTATION
        puts IO::Event::Selector.default::IMPLEMENTATION
        puts selector.class
        puts Gem.loaded_specs["io-event"].full_gem_path
        puts $LOADED_FEATURES.grep(%r{/io/event\\.rb\\z})
        selector.close
      RUBY
      output, error, status = run_bundle(app, "exec", RbConfig.ruby, "-e", script)
      assert status.success?, "bundle exec failed:\n#{output}\n#{error}"
      implementation, default_implementation, selector_class, gem_path, feature = output.lines.map(&:chomp)
      assert_equal "io-event-uring", implementation
      assert_equal "io-event-uring", default_implementation
      assert_equal IO::Event::Selector.default.name, selector_class
      assert_equal File.realpath(ROOT), File.realpath(gem_path)
      assert_equal File.join(LIB, "io", "event.rb"), feature
    end
  end
end
