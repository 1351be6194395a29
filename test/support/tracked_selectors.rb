# frozen_string_literal: true

# Selectors a test makes besides the one under test: `track(selector)` returns
# it, and teardown closes every tracked selector that is still open.
module TrackedSelectors
  def track(selector)
    (@tracked_selectors ||= []) << selector
    selector
  end

  def teardown
    @tracked_selectors&.each { |selector| selector.close unless selector.closed? }
  ensure
    super
  end
end
