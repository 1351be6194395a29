# frozen_string_literal: true

# Which compiled extension a benchmark process loads.
#
# By default the one built into lib/ (lib/io_event_uring/<abi>/io_event_uring.so).
# IO_EVENT_BENCH_SO names another: either a .so file, or a directory laid out like
# lib/ (one that holds io_event_uring/<abi>/io_event_uring.so). The Ruby half
# (lib/io/event/*.rb) comes from this checkout, copied when the run starts, the same
# for every build; only the native library differs. This is how "before" and "after" builds are measured in one run:
#
#   IO_EVENT_BENCH_SO=/work/baseline/io_event_uring.so ruby benchmark/selector/all.rb
#
# Every benchmark script requires this file before `require "io/event"`.

require "fileutils"
require "rbconfig"
require "tmpdir"

module BenchBuild
  ROOT = File.expand_path("..", __dir__)
  LIB = File.join(ROOT, "lib")
  VARIABLE = "IO_EVENT_BENCH_SO"
  # Where `require "io/event"` finds the library, relative to a load path entry.
  RELATIVE = File.join("io_event_uring", RbConfig::CONFIG["ruby_version"], "io_event_uring.so")

  module_function

  def current_so
    File.join(LIB, RELATIVE)
  end

  # The directory to put ahead of lib/ for +path+ (a .so file or a lib-like directory).
  def overlay_for(path)
    path = File.expand_path(path)
    if File.directory?(path)
      return path if File.file?(File.join(path, RELATIVE))

      raise ArgumentError, "#{VARIABLE}=#{path}: no #{RELATIVE} in that directory"
    end
    raise ArgumentError, "#{VARIABLE}=#{path}: no such file" unless File.file?(path)

    snapshot(path)
  end

  # Copies the .so at +path+, and the Ruby half of lib/ as it is now, into a new
  # directory laid out like lib/ and returns that directory. Copies, so that a rebuild
  # or an edit of lib/ during a run changes nothing: every build measured in one run
  # runs the same Ruby code. The directory is removed when the process that made it
  # exits.
  def snapshot(path, label = "so")
    dir = Dir.mktmpdir("io-event-bench-#{label}-")
    target = File.join(dir, RELATIVE)
    FileUtils.mkdir_p(File.dirname(target))
    FileUtils.cp(path, target)
    FileUtils.mkdir_p(File.join(dir, "io"))
    FileUtils.cp(File.join(LIB, "io/event.rb"), File.join(dir, "io/event.rb"))
    FileUtils.cp_r(File.join(LIB, "io/event"), File.join(dir, "io"))
    owner = Process.pid
    at_exit { FileUtils.rm_rf(dir) if Process.pid == owner }
    dir
  end

  # Puts lib/ on the load path, and the chosen library's directory ahead of it.
  def setup(env = ENV)
    $LOAD_PATH.delete(LIB)
    $LOAD_PATH.unshift(LIB)
    chosen = env[VARIABLE]
    $LOAD_PATH.unshift(overlay_for(chosen)) if chosen && !chosen.empty?
  end

  # The path of the io_event_uring.so this process loaded, or nil.
  def loaded_so
    $LOADED_FEATURES.find { |feature| feature.end_with?("/io_event_uring.so") }
  end
end

BenchBuild.setup
