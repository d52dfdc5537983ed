# frozen_string_literal: true

module Honker
  VERSION = "0.1.0"
  # The oldest extension version this gem works with.
  MIN_EXTENSION_VERSION = "0.1.0"
end
