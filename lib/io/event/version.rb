# frozen_string_literal: true

class IO
  module Event
    VERSION = "1.19.0"
  end
end
