# frozen_string_literal: true

# The benchmark server runs on the same Fiber::Scheduler as the test suite
# (test/support/scheduler.rb, class IOEventTestScheduler), so what wrk measures
# is the scheduler the tests prove correct. Nothing is redefined here.

lib = File.expand_path("../../lib", __dir__)
$LOAD_PATH.unshift(lib) unless $LOAD_PATH.include?(lib)

require_relative "../../test/support/scheduler"
