# frozen_string_literal: true

require "fiddle"

module Honker
  # A connection of its own, through the system libsqlite3 called with Fiddle, for honker's
  # blocking SQL functions (honker_claim_wait, honker_listen_wait, honker_read_wait,
  # honker_wait).
  #
  # Why not the sqlite3 gem: its 1.4 series keeps Ruby's GVL while a statement steps, so a wait
  # of seconds would stop every other thread of the process. Fiddle releases the GVL around each
  # C call, so other threads (handlers, heartbeats, the app) run while this one waits. It is the
  # same libsqlite3 the gem links, so the two share SQLite's POSIX lock bookkeeping.
  class Waiter
    module C
      LIB = begin
        Fiddle.dlopen(ENV.fetch("HONKER_LIBSQLITE3", "libsqlite3.so.0"))
      rescue Fiddle::DLError
        Fiddle.dlopen("libsqlite3.so")
      end
      T = Fiddle
      def self.fn(name, args, ret)
        Fiddle::Function.new(LIB[name], args, ret)
      end
      OPEN = fn("sqlite3_open_v2", [T::TYPE_VOIDP, T::TYPE_VOIDP, T::TYPE_INT, T::TYPE_VOIDP], T::TYPE_INT)
      CLOSE = fn("sqlite3_close_v2", [T::TYPE_VOIDP], T::TYPE_INT)
      ENABLE_LOAD = fn("sqlite3_enable_load_extension", [T::TYPE_VOIDP, T::TYPE_INT], T::TYPE_INT)
      LOAD = fn("sqlite3_load_extension", [T::TYPE_VOIDP, T::TYPE_VOIDP, T::TYPE_VOIDP, T::TYPE_VOIDP], T::TYPE_INT)
      BUSY = fn("sqlite3_busy_timeout", [T::TYPE_VOIDP, T::TYPE_INT], T::TYPE_INT)
      PREPARE = fn("sqlite3_prepare_v2", [T::TYPE_VOIDP, T::TYPE_VOIDP, T::TYPE_INT, T::TYPE_VOIDP, T::TYPE_VOIDP], T::TYPE_INT)
      STEP = fn("sqlite3_step", [T::TYPE_VOIDP], T::TYPE_INT)
      RESET = fn("sqlite3_reset", [T::TYPE_VOIDP], T::TYPE_INT)
      FINALIZE = fn("sqlite3_finalize", [T::TYPE_VOIDP], T::TYPE_INT)
      BIND_TEXT = fn("sqlite3_bind_text", [T::TYPE_VOIDP, T::TYPE_INT, T::TYPE_VOIDP, T::TYPE_INT, T::TYPE_VOIDP], T::TYPE_INT)
      BIND_INT64 = fn("sqlite3_bind_int64", [T::TYPE_VOIDP, T::TYPE_INT, T::TYPE_LONG_LONG], T::TYPE_INT)
      BIND_NULL = fn("sqlite3_bind_null", [T::TYPE_VOIDP, T::TYPE_INT], T::TYPE_INT)
      COLUMN_TEXT = fn("sqlite3_column_text", [T::TYPE_VOIDP, T::TYPE_INT], T::TYPE_VOIDP)
      ERRMSG = fn("sqlite3_errmsg", [T::TYPE_VOIDP], T::TYPE_VOIDP)
      FREE = fn("sqlite3_free", [T::TYPE_VOIDP], T::TYPE_VOID)
      TRANSIENT = Fiddle::Pointer.new(-1)
    end

    SQLITE_ROW = 100
    OPEN_FLAGS = 0x2 | 0x4 | 0x10000 # READWRITE | CREATE | FULLMUTEX

    def initialize(path, extension)
      Database.prime(extension)
      out = Fiddle::Pointer.malloc(Fiddle::SIZEOF_VOIDP)
      rc = C::OPEN.call(path, out, OPEN_FLAGS, nil)
      @db = out.ptr
      raise DatabaseError.new("db.open", "cannot open #{path}: #{errmsg}") unless rc.zero?

      C::BUSY.call(@db, 5000)
      C::ENABLE_LOAD.call(@db, 1)
      err = Fiddle::Pointer.malloc(Fiddle::SIZEOF_VOIDP)
      if C::LOAD.call(@db, extension, nil, err) != 0
        msg = err.ptr.null? ? errmsg : err.ptr.to_s
        C::FREE.call(err.ptr) unless err.ptr.null?
        close
        coded = Error.from_driver(StandardError.new(msg))
        raise coded if coded

        raise ExtensionError.new("ext.load", "cannot load the honker extension from #{extension.inspect}: #{msg}")
      end
      C::ENABLE_LOAD.call(@db, 0)
      @stmts = {}
      @lock = Mutex.new
    end

    # Run "SELECT fn(args...)" and return its one TEXT value (nil for NULL).
    def call(sql, args)
      @lock.synchronize do
        raise ClosedError.new("binding.closed", "waiter closed") if @db.nil?

        stmt = (@stmts[sql] ||= prepare(sql))
        args.each_with_index do |a, i|
          case a
          when nil then C::BIND_NULL.call(stmt, i + 1)
          when Integer then C::BIND_INT64.call(stmt, i + 1, a)
          else
            s = a.to_s
            C::BIND_TEXT.call(stmt, i + 1, s, s.bytesize, C::TRANSIENT)
          end
        end
        rc = C::STEP.call(stmt)
        if rc == SQLITE_ROW
          ptr = C::COLUMN_TEXT.call(stmt, 0)
          value = ptr.null? ? nil : ptr.to_s.force_encoding(Encoding::UTF_8)
          C::RESET.call(stmt)
          value
        else
          msg = errmsg
          C::RESET.call(stmt)
          raise SQLite3::BusyException, msg if rc == 5 # SQLITE_BUSY stays the driver's own error

          raise Error.from_driver(StandardError.new(msg)) || DatabaseError.new("db.error", msg)
        end
      end
    end

    def close
      @lock.synchronize do
        return if @db.nil?

        @stmts&.each_value { |s| C::FINALIZE.call(s) }
        C::CLOSE.call(@db)
        @db = nil
      end
    end

    private

    def prepare(sql)
      out = Fiddle::Pointer.malloc(Fiddle::SIZEOF_VOIDP)
      rc = C::PREPARE.call(@db, sql, -1, out, nil)
      raise DatabaseError.new("db.error", errmsg) unless rc.zero?

      out.ptr
    end

    def errmsg
      C::ERRMSG.call(@db).to_s
    end
  end
end
