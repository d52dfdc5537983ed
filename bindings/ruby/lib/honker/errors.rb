# frozen_string_literal: true

module Honker
  # Every error honker raises; #code is the stable code shared by every language binding
  # ("queue.lease_lost", "payload.not_json", ...). SQLite3::BusyException is never wrapped.
  class Error < StandardError
    attr_reader :code

    def initialize(code, message = nil)
      @code = code
      super(message ? "#{code}: #{message}" : code)
    end

    # Codes with a class of their own; others map by area (the part before the dot).
    CODE_CLASSES = {}
    AREA_CLASSES = {}

    # The Honker::Error for a driver exception whose message reads "honker: <code>: <msg>", or
    # nil when it carries no honker code.
    def self.from_driver(exc)
      m = /honker: ([a-z0-9_]+\.[a-z0-9_]+): (.*)\z/m.match(exc.message)
      return nil unless m

      build(m[1], m[2])
    end

    def self.build(code, message = nil)
      klass = CODE_CLASSES[code] || AREA_CLASSES[code.split(".").first] || Error
      klass.new(code, message)
    end
  end

  class ArgumentError < Error; end       # arg.invalid, options.unknown
  class PayloadError < Error; end        # payload.*
  class QueueError < Error; end          # queue.*
  class LeaseLost < QueueError; end      # queue.lease_lost
  class StreamError < Error; end         # stream.*
  class NotifyError < Error; end         # notify.*
  class CronError < Error; end           # cron.*
  class WaitError < Error; end           # wait.*, wake.*
  class WaitCancelled < WaitError; end   # wait.cancelled
  class DatabaseError < Error; end       # db.*, schema.*, setup.*
  class ExtensionError < Error; end      # ext.* (this gem cannot load the extension)
  class ClosedError < Error; end         # binding.closed

  Error::CODE_CLASSES.merge!(
    "queue.lease_lost" => LeaseLost,
    "wait.cancelled" => WaitCancelled
  )
  Error::AREA_CLASSES.merge!(
    "arg" => ArgumentError, "options" => ArgumentError, "payload" => PayloadError,
    "queue" => QueueError, "stream" => StreamError, "notify" => NotifyError, "cron" => CronError,
    "wait" => WaitError, "wake" => WaitError, "db" => DatabaseError, "schema" => DatabaseError,
    "setup" => DatabaseError, "ext" => ExtensionError, "binding" => ClosedError
  )
end
