# frozen_string_literal: true

require "sqlite3"
require "json"

module Honker
  # A honker handle over one SQLite3::Database. Every write runs on that connection, so inside
  # the application's `db.transaction do ... end` it commits or rolls back with the business
  # rows. Blocking calls (listeners, subscriptions, workers) use a Waiter connection of their own.
  class Database
    # The application's (or Honker.open's) SQLite3::Database.
    attr_reader :db
    attr_reader :path, :extension_path, :version

    SETUP_PRAGMAS = [
      "PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", "PRAGMA wal_autocheckpoint=10000",
      "PRAGMA busy_timeout=5000", "PRAGMA foreign_keys=ON"
    ].freeze

    def initialize(db, extension_path:, setup:)
      @db = db
      @extension_path = extension_path
      load_extension unless function?("honker_version")
      apply_setup if setup
      @version = db.get_first_value("SELECT honker_version()")
      if Gem::Version.new(@version) < Gem::Version.new(MIN_EXTENSION_VERSION)
        raise ExtensionError.new("ext.load", "extension #{@version} at #{extension_path.inspect} is older than #{MIN_EXTENSION_VERSION}")
      end

      @path = db.filename("main")
      names = db.execute("SELECT name, narg FROM pragma_function_list WHERE name IN ('honker_wait_cancel', 'honker_claim_wait', 'honker_info')")
      @cancellable = names.any? { |n, _| n == "honker_wait_cancel" } &&
                     names.any? { |n, a| n == "honker_claim_wait" && [6, -1].include?(a) } &&
                     ENV["HONKER_RUBY_NO_CANCEL"] != "1"
      @has_info = names.any? { |n, _| n == "honker_info" }
      @key_seq = 0
      @key_lock = Mutex.new
    end

    # Whether waits stop through the extension's cancel keys (else in bounded 200 ms slices).
    def cancellable_waits?
      @cancellable
    end

    # honker_info() as a Hash, or nil when the extension predates it.
    def info
      @has_info ? JSON.parse(@db.get_first_value("SELECT honker_info()")) : nil
    end

    # Run the application's block in a BEGIN IMMEDIATE transaction on this connection.
    def transaction(&block)
      @db.transaction(:immediate, &block)
    end

    def close
      @db.close unless @db.closed?
    end

    # --- queue ------------------------------------------------------------------------------

    # Add a job; inside the application's transaction it exists only if that commits.
    # Times are seconds (Float ok): delay:, expires_in:; run_at: a Time.
    def enqueue(queue, payload, delay: nil, run_at: nil, priority: nil, max_attempts: nil,
                expires_in: nil, dedup_key: nil)
      body = Payload.encode(payload)
      opts = enqueue_options(delay, run_at, priority, max_attempts, expires_in, dedup_key)
      opts ? value("SELECT honker_enqueue(?, ?, ?)", queue, body, opts) : value("SELECT honker_enqueue(?, ?)", queue, body)
    end

    # Add several jobs in one statement; returns their ids.
    def enqueue_many(queue, payloads, **opts)
      bodies = "[#{payloads.map { |p| Payload.encode(p) }.join(",")}]"
      o = enqueue_options(opts[:delay], opts[:run_at], opts[:priority], opts[:max_attempts], opts[:expires_in], opts[:dedup_key])
      JSON.parse(value("SELECT honker_enqueue_batch(?, ?, ?)", queue, bodies, o))
    end

    # Take up to n due jobs without waiting; Honker::Job objects.
    def claim(queue, worker:, n: 1, lease: nil)
      jobs(value("SELECT honker_claim(?, ?, ?, ?)", queue, worker, n, ms(lease)))
    end

    def ack(id, token)
      value("SELECT honker_ack(?, ?)", id, token) == 1
    end

    # Retry a held job after delay seconds (nil: the queue's backoff); returns
    # {"state" => "retrying", "run_at_ms" => ..} or {"state" => "dead"}.
    def retry(id, token, delay: nil, error: nil)
      JSON.parse(value("SELECT honker_retry(?, ?, ?, ?)", id, token, ms(delay), error&.to_s))
    end

    # Give a held job back without using an attempt.
    def release(id, token)
      value("SELECT honker_release(?, ?)", id, token) == 1
    end

    # Dead-letter a held job.
    def fail(id, token, error)
      value("SELECT honker_fail(?, ?, ?)", id, token, error.to_s) == 1
    end

    # Extend a held job's lease by extend seconds; returns the new expiry (ms).
    def heartbeat(id, token, extend)
      value("SELECT honker_heartbeat(?, ?, ?)", id, token, ms(extend))
    end

    def cancel(id)
      value("SELECT honker_cancel(?)", id) == 1
    end

    # The job as a Hash (live, dead or in history), or nil.
    def job(id)
      Payload.decode(value("SELECT honker_job(?)", id))
    end

    def stats(queue)
      JSON.parse(value("SELECT honker_queue_stats(?)", queue))
    end

    # Store queue options (lease_ms:, max_attempts:, backoff_base_ms:, ...); returns them all.
    def configure_queue(queue, **options)
      JSON.parse(value("SELECT honker_queue_configure(?, ?)", queue, JSON.generate(options)))
    end

    def dead_jobs(queue, limit: 100)
      JSON.parse(value("SELECT honker_dead_list(?, ?)", queue, limit))
    end

    def requeue_dead(id)
      value("SELECT honker_dead_requeue(?)", id) == 1
    end

    def save_result(id, result, ttl: nil)
      value("SELECT honker_result_save(?, ?, ?)", id, Payload.encode(result), ms(ttl)) == 1
    end

    def result(id)
      Payload.decode(value("SELECT honker_result_get(?)", id))
    end

    # --- pub/sub ----------------------------------------------------------------------------

    # Publish payload on channel; in the application's transaction, visible on commit.
    def notify(channel, payload)
      value("SELECT honker_notify(?, ?)", channel, Payload.encode(payload))
    end

    # A Listener on channel after the notification id `after` (:now: only new ones; 0: every
    # kept one). Close it (or pass a block, which closes it).
    def listen(channel, after: :now)
      if after == :now
        # The channel's newest id, served by the (channel, id) index.
        after = @db.get_first_value("SELECT coalesce(max(id), 0) FROM honker_notifications WHERE channel = ?", channel)
      end
      l = Listener.new(self, channel, after)
      return l unless block_given?

      begin
        yield l
      ensure
        l.close
      end
    end

    # --- streams ----------------------------------------------------------------------------

    def publish(topic, payload, key: nil)
      value("SELECT honker_publish(?, ?, ?)", topic, Payload.encode(payload), key)
    end

    def read(topic, after: 0, limit: 100)
      JSON.parse(value("SELECT honker_read(?, ?, ?)", topic, after, limit)).map { |e| Event.new(e) }
    end

    # Record consumer's progress on topic (monotonic); true when it advanced. Inside the
    # application's transaction, with the effects of the events.
    def commit_offset(consumer, topic, offset)
      value("SELECT honker_commit_offset(?, ?, ?)", consumer, topic, offset) == 1
    end

    def offset(consumer, topic)
      value("SELECT honker_offset(?, ?)", consumer, topic)
    end

    # A Subscription reading topic as consumer from its committed offset (replay, then live).
    def subscribe(consumer, topic)
      s = Subscription.new(self, consumer, topic, offset(consumer, topic) || 0)
      return s unless block_given?

      begin
        yield s
      ensure
        s.close
      end
    end

    # --- cron -------------------------------------------------------------------------------

    # Register or update a schedule; returns the next fire time (ms) or nil.
    def schedule(name, cron, queue:, payload: {}, **options)
      opts = options.empty? ? nil : JSON.generate(options)
      value("SELECT honker_schedule(?, ?, ?, ?, ?)", name, cron, queue, Payload.encode(payload), opts)
    end

    def unschedule(name)
      value("SELECT honker_unschedule(?)", name) == 1
    end

    def pause_schedule(name)
      value("SELECT honker_schedule_pause(?)", name)
    end

    def resume_schedule(name)
      value("SELECT honker_schedule_resume(?)", name)
    end

    def schedules
      JSON.parse(value("SELECT honker_schedules(1)"))
    end

    # The next fire (ms) of expr after `after` (a Time or ms), in tz (nil: UTC).
    def cron_next(expr, after: Time.now, tz: nil)
      after_ms = after.is_a?(Time) ? (after.to_r * 1000).to_i : after
      value("SELECT honker_cron_next(?, ?, ?)", expr, after_ms, tz)
    end

    # Fire every due boundary once; returns [{"schedule","fire_ms","job_id"}].
    def tick
      JSON.parse(value("SELECT honker_cron_tick()"))
    end

    # --- locks and rate limits --------------------------------------------------------------

    # Take the named lock for ttl seconds; a Lock, or nil when another owner holds it. With a
    # block, runs it under the lock and releases it after (returns nil if not taken).
    def try_lock(name, owner:, ttl:)
      token = value("SELECT honker_lock_acquire(?, ?, ?)", name, owner, ms(ttl))
      return nil unless token

      lock = Lock.new(self, name, token)
      return lock unless block_given?

      begin
        yield lock
      ensure
        lock.release
      end
    end

    # Count one use of a fixed-window rate limit; true when admitted.
    def allow?(name, limit:, per:)
      value("SELECT honker_rate_limit(?, ?, ?)", name, limit, ms(per)) == 1
    end

    # --- plumbing ---------------------------------------------------------------------------

    # Run a one-value statement, mapping honker errors to Honker::Error.
    def value(sql, *args)
      @db.get_first_value(sql, args)
    rescue SQLite3::BusyException
      raise
    rescue SQLite3::Exception => e
      raise(Error.from_driver(e) || e)
    end

    # A fresh Waiter connection for a blocking helper.
    def waiter
      Waiter.new(@path, @extension_path)
    end

    # Run the blocking fn(args..., timeout_ms[, key]) on waiter; stop (a callable returning
    # true) ends a fallback wait between slices. Returns the text result.
    def wait_call(waiter, fn, args, timeout_ms, key: nil, empty: "[]", stop: nil)
      if @cancellable
        waiter.call("SELECT #{fn}(#{(["?"] * (args.size + 2)).join(", ")})", args + [timeout_ms, key || next_key])
      else
        sql = "SELECT #{fn}(#{(["?"] * (args.size + 1)).join(", ")})"
        deadline = now_ms + timeout_ms
        loop do
          slice = (deadline - now_ms).clamp(1, 200)
          out = waiter.call(sql, args + [slice])
          return out if out != empty || now_ms >= deadline
          raise WaitCancelled.new("wait.cancelled", "stopped") if stop&.call
        end
      end
    end

    # Stop every wait running under key (from another thread); no-op without cancel keys.
    def cancel_wait(key)
      value("SELECT honker_wait_cancel(?)", key) if @cancellable
    end

    def next_key
      @key_lock.synchronize { "rb-#{Process.pid}-#{object_id}-#{@key_seq += 1}" }
    end

    def epoch
      value("SELECT honker_epoch()")
    end

    private

    def function?(name)
      !@db.get_first_value("SELECT 1 FROM pragma_function_list WHERE name = ?", name).nil?
    end

    PRIME_LOCK = Mutex.new
    @primed = {}

    # Load the extension once per process into an in-memory connection kept open. It loads
    # permanently, so a later load whose init fails on a file (schema.too_new) cannot leave
    # SQLite calling into an unmapped library (SQLite dlcloses an extension whose init failed;
    # the first such load in a process otherwise crashes it at close).
    def self.prime(path)
      PRIME_LOCK.synchronize do
        @primed[path] ||= SQLite3::Database.new(":memory:").tap do |m|
          m.enable_load_extension(true)
          m.load_extension(path)
          m.enable_load_extension(false)
        end
      rescue StandardError
        nil
      end
    end

    def load_extension
      Database.prime(@extension_path)
      @db.enable_load_extension(true)
      @db.load_extension(@extension_path)
    rescue StandardError => e
      # Loaded, but its init refused the file (schema.too_new, ...): that code, not ext.load.
      coded = Error.from_driver(e)
      raise coded if coded

      raise ExtensionError.new("ext.load", "cannot load the honker extension from #{@extension_path.inspect} " \
                                            "(set HONKER_EXT to its path): #{e.message}")
    ensure
      @db.enable_load_extension(false)
    end

    def apply_setup
      if function?("honker_setup")
        value("SELECT honker_setup()")
      else
        SETUP_PRAGMAS.each { |p| @db.execute(p) }
      end
    end

    def enqueue_options(delay, run_at, priority, max_attempts, expires_in, dedup_key)
      o = {}
      o[:delay_ms] = ms(delay) if delay
      o[:run_at_ms] = (run_at.to_r * 1000).to_i if run_at
      o[:priority] = priority if priority
      o[:max_attempts] = max_attempts if max_attempts
      o[:expires_in_ms] = ms(expires_in) if expires_in
      o[:dedup_key] = dedup_key if dedup_key
      o.empty? ? nil : JSON.generate(o)
    end

    def jobs(text)
      JSON.parse(text).map { |h| Job.new(h) }
    end

    def ms(seconds)
      return nil if seconds.nil?
      raise ArgumentError.new("arg.invalid", "expected seconds as a number, got #{seconds.inspect}") unless seconds.is_a?(Numeric)

      (seconds * 1000).round
    end

    def now_ms
      Process.clock_gettime(Process::CLOCK_MONOTONIC, :millisecond)
    end
  end

  # A claimed job.
  class Job
    attr_reader :id, :queue, :payload, :attempts, :max_attempts, :lease_token, :lease_expires_ms, :priority

    def initialize(h)
      @id = h["id"]
      @queue = h["queue"]
      @payload = h["payload"]
      @attempts = h["attempts"]
      @max_attempts = h["max_attempts"]
      @lease_token = h["lease_token"]
      @lease_expires_ms = h["lease_expires_ms"]
      @priority = h["priority"]
    end
  end

  # A durable stream event.
  Event = Struct.new(:offset, :topic, :key, :payload, :created_ms) do
    def initialize(h)
      super(h["offset"], h["topic"], h["key"], h["payload"], h["created_ms"])
    end
  end

  # A pub/sub notification.
  Notification = Struct.new(:id, :channel, :payload, :created_ms) do
    def initialize(h)
      super(h["id"], h["channel"], h["payload"], h["created_ms"])
    end
  end

  # A held named lock; token is its fencing token.
  class Lock
    attr_reader :name, :token

    def initialize(honker, name, token)
      @honker = honker
      @name = name
      @token = token
    end

    def renew(ttl)
      @honker.value("SELECT honker_lock_renew(?, ?, ?)", @name, @token, (ttl * 1000).round) == 1
    end

    def release
      @honker.value("SELECT honker_lock_release(?, ?)", @name, @token) == 1
    end
  end
end
