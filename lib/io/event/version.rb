# frozen_string_literal: true

class IO
  module Event
    # The io-event release whose API and behaviour this matches.
    VERSION = "1.19.4"
  end
end
