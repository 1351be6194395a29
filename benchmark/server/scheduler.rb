# frozen_string_literal: true

# The benchmark server runs on the same Fiber::Scheduler as the test suite
# (test/support/scheduler.rb, class IOEventTestScheduler), so what wrk measures
# is the scheduler the tests prove correct. Nothing is redefined here.

# lib/ on the load path; IO_EVENT_BENCH_SO picks another build of the extension.
require_relative "../build"

require_relative "../../test/support/scheduler"
