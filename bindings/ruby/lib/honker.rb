# frozen_string_literal: true

require "socket"
require "timeout"
require "sqlite3"
require_relative "honker/version"
require_relative "honker/errors"
require_relative "honker/payload"
require_relative "honker/waiter"
require_relative "honker/database"
require_relative "honker/listener"
require_relative "honker/worker"
require_relative "honker/scheduler"

# honker: durable queues, NOTIFY/LISTEN, streams, cron, locks and rate limits inside an SQLite
# file, as SQL functions of one extension; this gem is the Ruby layer over it.
module Honker
  module_function

  # The extension this gem loads: $HONKER_EXT, else $HONKER_EXT_PATH, else "libhonker_ext" from
  # the loader's search path.
  def extension_path
    ENV["HONKER_EXT"] || ENV["HONKER_EXT_PATH"] || "libhonker_ext"
  end

  # Open (creating if needed) the SQLite file at path, load the extension and apply honker's
  # settings (WAL, busy timeout 5 s, ...). In-memory databases are refused: wakes need a file.
  def open(path, extension: extension_path)
    if path.to_s.empty? || path.to_s == ":memory:" || path.to_s.include?("mode=memory")
      raise DatabaseError.new("db.not_file", "honker needs a database file, not #{path.inspect}")
    end

    db = SQLite3::Database.new(path.to_s)
    db.busy_timeout = 5000
    Database.new(db, extension_path: extension, setup: true)
  rescue StandardError
    db&.close
    raise
  end

  # Load the extension into the application's own SQLite3::Database (once; later calls return
  # the same handle), so enqueue, notify and publish run inside its transactions. setup: true
  # also applies honker's settings to it.
  def attach(db, extension: extension_path, setup: false)
    @attached ||= ObjectSpace::WeakMap.new
    @attached[db] ||= Database.new(db, extension_path: extension, setup: setup)
  end
end
