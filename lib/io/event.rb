# frozen_string_literal: true

require_relative "event/implementation"
require_relative "event/version"
require_relative "event/support"
require_relative "event/selector"
require_relative "event/timers"
require_relative "event/native"
