# frozen_string_literal: true

# `rake bench:record` names one column `check_against`, and `rake bench:check`
# compares one build's measured figures with it: both must be the build in lib/,
# whatever other builds (an older one, the C io-event) the run measured and in
# whatever order they were given.

require_relative "../test_helper"
require "tmpdir"
require_relative "../../benchmark/counts/measure"
require_relative "../../benchmark/counts/results"
require_relative "../../benchmark/counts/targets"

class BenchCheckColumnTest < Minitest::Test
  def build(label, source)
    BenchCounts::Build.new(label: label, source: source, dir: nil, sha256: "0" * 12, mtime: Time.at(0))
  end

  def figures
    {
      "before" => { "URing" => { "select_zero.syscalls" => 1.0 } },
      "after" => { "URing" => { "select_zero.syscalls" => 0.0 } },
      "C" => { "URing" => { "select_zero.syscalls" => 7.0 } }
    }
  end

  def with_builds
    skip "no library built in lib/" unless File.file?(BenchBuild.current_so)
    Dir.mktmpdir do |dir|
      others = %w[before C].to_h { |label| [label, File.join(dir, "#{label}.so")] }
      others.each_value { |path| File.write(path, "") }
      yield others
    end
  end

  def test_the_checked_column_and_the_checked_figures_are_lib_s_build
    with_builds do |others|
      [%w[before after C], %w[C after before], %w[after C before]].each do |order|
        builds = order.map { |label| build(label, others.fetch(label) { BenchBuild.current_so }) }
        empty = { "check_against" => nil, "margins" => BenchResults::DEFAULT_MARGINS, "columns" => {} }
        recorded = BenchResults.record(empty, figures, builds)
        assert_equal "after", recorded["check_against"], "order #{order}"
        assert_equal figures["after"], BenchResults.checked_figures(figures, builds), "order #{order}"
        assert_empty BenchResults.check(recorded, BenchResults.checked_figures(figures, builds)).reject(&:last)
      end
    end
  end

  def test_issue_targets_are_judged_on_lib_s_build_not_the_last_one
    with_builds do |others|
      builds = %w[before after C].map { |label| build(label, others.fetch(label) { BenchBuild.current_so }) }
      lines = BenchTargets.lines(figures, BenchResults.checked_build(builds).label)
      line = lines.find { |l| l.include?("select(0) system calls") }
      assert_equal "target (issue 11): select(0) system calls per call <= 0: URing 0.0 (met)", line
      last = BenchTargets.lines(figures).find { |l| l.include?("select(0) system calls") }
      assert_match(/URing 7\.0 \(NOT met\)/, last)
    end
  end

  def test_without_lib_s_build_the_last_one_is_checked
    with_builds do |others|
      builds = [build("before", others["before"]), build("C", others["C"])]
      assert_equal "C", BenchResults.checked_build(builds).label
      assert_equal figures["C"], BenchResults.checked_figures(figures, builds)
    end
  end
end
