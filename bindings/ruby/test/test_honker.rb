# frozen_string_literal: true

require_relative "test_helper"

class TestHonker < Minitest::Test
  include HonkerTestHelpers

  def test_open_applies_settings_and_refuses_memory
    assert_equal "wal", honker.db.get_first_value("PRAGMA journal_mode")
    assert_equal 5000, honker.db.get_first_value("PRAGMA busy_timeout")
    assert_equal 1, honker.db.get_first_value("PRAGMA foreign_keys")
    assert_equal 1, honker.db.get_first_value("PRAGMA synchronous")
    e = assert_raises(Honker::DatabaseError) { Honker.open(":memory:") }
    assert_equal "db.not_file", e.code
  end

  def test_missing_extension_names_the_path
    e = assert_raises(Honker::ExtensionError) { Honker.open(@path, extension: "/nope/libhonker_ext.so") }
    assert_equal "ext.load", e.code
    assert_includes e.message, "/nope/libhonker_ext.so"
  end

  def test_a_too_new_schema_is_its_own_code_not_ext_load
    honker.db.execute("UPDATE honker_meta SET value = 999 WHERE key = 'schema_version'")
    honker.close
    e = assert_raises(Honker::DatabaseError) { Honker.open(@path) }
    assert_equal "schema.too_new", e.code
  end

  def test_attach_enqueues_inside_the_applications_transaction
    app = SQLite3::Database.new(@path)
    h = Honker.attach(app, setup: true)
    assert_same h, Honker.attach(app)
    app.execute("CREATE TABLE orders(id INTEGER PRIMARY KEY)")
    assert_raises(RuntimeError) do
      app.transaction(:immediate) do
        app.execute("INSERT INTO orders VALUES (1)")
        h.enqueue("emails", { "order" => 1 })
        h.notify("orders", 1)
        raise "roll back"
      end
    end
    assert_equal 0, app.get_first_value("SELECT count(*) FROM honker_jobs")
    assert_equal 0, app.get_first_value("SELECT count(*) FROM honker_notifications")
    id = nil
    app.transaction(:immediate) do
      app.execute("INSERT INTO orders VALUES (2)")
      id = h.enqueue("emails", { "order" => 2 })
    end
    assert_equal({ "order" => 2 }, h.job(id)["payload"])
  ensure
    app&.close
  end

  def test_bad_input_is_typed_and_writes_nothing
    cases = {
      -> { honker.enqueue("q", Float::NAN) } => [Honker::PayloadError, "payload.not_json"],
      -> { honker.enqueue("q", { "n" => 2**60 }) } => [Honker::PayloadError, "payload.not_json"],
      -> { honker.enqueue("q", [-(2**53) - 1]) } => [Honker::PayloadError, "payload.not_json"],
      -> { honker.enqueue("q", Object.new) } => [Honker::PayloadError, "payload.not_json"],
      -> { honker.notify("c", { "t" => Time.now }) } => [Honker::PayloadError, "payload.not_json"],
      -> { honker.enqueue("", 1) } => [Honker::QueueError, "queue.bad_name"],
      -> { honker.enqueue("q", 1, delay: 1, run_at: Time.now) } => [Honker::QueueError, "queue.bad_option"],
      -> { honker.enqueue("q", 1, delay: "soon") } => [Honker::ArgumentError, "arg.invalid"],
      -> { honker.schedule("s", "nope", queue: "q") } => [Honker::CronError, "cron.bad_expression"],
      -> { honker.schedule("s", "* * * * *", queue: "q", tz: "Mars/Base") } => [Honker::CronError, "cron.unknown_zone"],
      -> { honker.schedule("s", "* * * * *", queue: "q", bogus: 1) } => [Honker::Error, nil],
      -> { honker.ack(12_345, 1) } => [Honker::LeaseLost, "queue.lease_lost"],
      -> { honker.publish("", 1) } => [Honker::StreamError, "stream.bad_topic"]
    }
    cases.each do |call, (klass, code)|
      e = assert_raises(klass) { call.call }
      assert_equal code, e.code if code
      assert_kind_of Honker::Error, e
    end
    %w[honker_jobs honker_notifications honker_schedules honker_streams].each do |t|
      assert_equal 0, count("SELECT count(*) FROM #{t}"), t
    end
    assert honker.enqueue("q", { "n" => 2**53, "s" => "12345678901234567890" })
  end

  def test_busy_stays_the_drivers_exception
    honker
    other = SQLite3::Database.new(@path)
    other.busy_timeout = 0
    h2 = Honker.attach(other)
    honker.transaction do
      honker.enqueue("q", 1)
      assert_raises(SQLite3::BusyException) { h2.enqueue("q", 2) }
    end
  ensure
    other&.close
  end

  def test_claim_ack_retry_dead_and_requeue
    honker.configure_queue("q", max_attempts: 2)
    ids = honker.enqueue_many("q", [{ "n" => 1 }, { "n" => 2 }])
    assert_equal 2, ids.size
    a, b = honker.claim("q", worker: "w", n: 10, lease: 60)
    assert honker.ack(a.id, a.lease_token)
    assert_raises(Honker::LeaseLost) { honker.ack(a.id, a.lease_token) }
    assert_equal "retrying", honker.retry(b.id, b.lease_token, delay: 0, error: "boom")["state"]
    again = honker.claim("q", worker: "w")
    assert_equal 2, again.first.attempts
    assert_equal "dead", honker.retry(again.first.id, again.first.lease_token, delay: 0)["state"]
    assert_equal 1, honker.stats("q")["dead"]
    assert honker.requeue_dead(b.id)
  end

  def test_listen_across_connections_and_close_ends_a_waiting_next
    honker.notify("ch", "old")
    l = honker.listen("ch")
    other = Honker.open(@path)
    Thread.new { sleep 0.02; other.notify("ch", { "hello" => "world" }) }
    n = l.next(timeout: 20)
    assert_equal({ "hello" => "world" }, n.payload)
    waiting = Thread.new { Thread.current.report_on_exception = false; l.next }
    eventually("the listener to wait") { waiting.status == "sleep" || waiting.status == "run" }
    l.close
    assert_raises(Honker::ClosedError) { waiting.value }
  ensure
    other&.close
  end

  def test_a_waiting_listener_does_not_stall_other_threads
    l = honker.listen("quiet")
    ticks = 0
    ticker = Thread.new { loop { sleep 0.01; ticks += 1 } }
    assert_nil l.next(timeout: 1)
    assert_operator ticks, :>, 5, "a wait in one thread must not hold the GVL"
  ensure
    ticker&.kill
    l&.close
  end

  def test_stream_offset_commits_with_the_handlers_effect
    honker.db.execute("CREATE TABLE totals(n INTEGER)")
    honker.db.execute("INSERT INTO totals VALUES (0)")
    (1..3).each { |i| honker.publish("t", { "add" => i }) }
    honker.subscribe("summer", "t") do |sub|
      2.times do
        ev = sub.next(timeout: 10)
        honker.transaction do
          honker.db.execute("UPDATE totals SET n = n + ?", [ev.payload["add"]])
          sub.commit(ev)
        end
      end
    end
    honker.subscribe("summer", "t") do |sub|
      assert_equal({ "add" => 3 }, sub.next(timeout: 10).payload)
    end
    assert_equal 3, count("SELECT n FROM totals")
    assert_raises(Honker::StreamError) { honker.commit_offset("summer", "t", 2**40) }
  end

  def test_locks_and_rate_limits
    a = honker.try_lock("job", owner: "a", ttl: 60)
    refute_nil a
    assert_nil honker.try_lock("job", owner: "b", ttl: 60)
    assert a.renew(60)
    assert a.release
    b = honker.try_lock("job", owner: "b", ttl: 60)
    assert_operator b.token, :>, a.token
    admitted = 5.times.count { honker.allow?("api", limit: 3, per: 3600) }
    assert_equal 3, admitted
  end

  def test_scheduler_fires_into_the_queue
    honker.schedule("tick", "@every 100ms", queue: "cronq", payload: { "k" => "v" })
    s = Honker::Scheduler.new(@path).start
    eventually("two cron jobs") { honker.stats("cronq").values_at("pending", "scheduled").sum >= 2 }
    s.stop
    jan1 = Time.utc(2024, 1, 1, 10)
    assert_equal (Time.utc(2024, 1, 2, 9).to_i * 1000), honker.cron_next("0 9 * * *", after: jan1)
    assert_equal ["tick"], honker.schedules.map { |x| x["name"] }
  end

  def test_cancel_path_matches_the_extension
    has = !honker.db.get_first_value("SELECT 1 FROM pragma_function_list WHERE name = 'honker_wait_cancel'").nil?
    assert_equal(has && ENV["HONKER_RUBY_NO_CANCEL"] != "1", honker.cancellable_waits?)
  end
end
