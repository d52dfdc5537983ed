# frozen_string_literal: true

require_relative "test_helper"
require "rbconfig"

class TestWorker < Minitest::Test
  include HonkerTestHelpers

  def start_worker(queue, **opts, &block)
    w = Honker::Worker.new(@path, queue: queue, **opts, &block).start
    @workers ||= []
    @workers << w
    w
  end

  def teardown
    @workers&.each { |w| w.stop(timeout: 5) }
    super
  end

  def test_runs_jobs_concurrently_and_acks_them
    40.times { |i| honker.enqueue("mail", { "n" => i }) }
    seen = Queue.new
    in_flight = 0
    max = 0
    lock = Mutex.new
    start_worker("mail", concurrency: 4) do |job|
      lock.synchronize { in_flight += 1; max = [max, in_flight].max }
      sleep 0.005
      seen << job.payload["n"]
      lock.synchronize { in_flight -= 1 }
    end
    eventually("all acked") { honker.stats("mail").values_at("pending", "running", "scheduled").sum.zero? }
    assert_equal (0...40).to_a, Array.new(seen.size) { seen.pop }.sort
    assert_operator max, :<=, 4
  end

  def test_exceptions_retry_with_a_delay_and_discard_dead_letters
    id = honker.enqueue("flaky", { "n" => 1 })
    dead = honker.enqueue("doomed", { "n" => 2 })
    calls = 0
    start_worker("flaky", retry_delay: ->(_attempt, _err) { 0.01 }) do |_job|
      calls += 1
      raise Honker::Worker::Retry.new("smtp down", delay: 0.01) if calls == 1
      raise "oops" if calls == 2
    end
    start_worker("doomed") { |_job| raise Honker::Worker::Discard, "bad address" }
    eventually("job done") { honker.job(id).nil? }
    assert_equal 3, calls
    eventually("dead letter") { honker.job(dead)&.fetch("state") == "dead" }
    assert_equal 1, honker.job(dead)["attempts"]
    assert_includes honker.job(dead)["last_error"], "bad address"
  end

  def test_stop_releases_held_jobs_without_using_an_attempt
    id = honker.enqueue("slow", { "n" => 1 })
    started = Queue.new
    w = Honker::Worker.new(@path, queue: "slow") do |_job|
      started << true
      sleep 60
    end.start
    started.pop
    refute w.stop(timeout: 0.1), "stop reports the job it had to interrupt"
    job = honker.job(id)
    assert_equal "pending", job["state"]
    assert_equal 0, job["attempts"]
  end

  def test_heartbeats_keep_a_long_job_leased
    id = honker.enqueue("long", { "n" => 1 })
    release = Queue.new
    errors = []
    start_worker("long", lease: 0.3, heartbeat: 0.05, on_error: ->(e) { errors << e }) { |_j| release.pop }
    first = nil
    eventually("running") { first = count("SELECT lease_expires FROM honker_jobs WHERE id = ? AND lease_expires IS NOT NULL", id) }
    eventually("lease extended") { (count("SELECT lease_expires FROM honker_jobs WHERE id = ?", id) || 0) > first }
    release << true
    eventually("acked") { honker.job(id).nil? }
    assert_empty errors
  end

  def test_transactional_handler_commits_effect_and_ack_together
    honker.db.execute("CREATE TABLE sent(n INTEGER)")
    ok = honker.enqueue("tx", { "n" => 1 })
    bad = honker.enqueue("tx", { "n" => 2 }, max_attempts: 1)
    start_worker("tx", transactional: true) do |job, db|
      db.db.execute("INSERT INTO sent VALUES (?)", [job.payload["n"]])
      raise "after the insert" if job.payload["n"] == 2
    end
    eventually("both settled") { honker.job(ok).nil? && honker.job(bad)&.fetch("state") == "dead" }
    assert_equal 1, count("SELECT count(*) FROM sent")
  end

  def test_a_waiting_worker_does_not_stall_other_threads
    start_worker("idle") { |_j| nil }
    ticks = 0
    t = Thread.new { loop { sleep 0.01; ticks += 1 } }
    sleep 0.5
    assert_operator ticks, :>, 10
  ensure
    t&.kill
  end

  # --- real processes ----------------------------------------------------------------------

  def spawn_ruby(code)
    lib = File.expand_path("../lib", __dir__)
    Process.spawn(RbConfig.ruby, "-I#{lib}", "-e", code, err: $stderr)
  end

  def test_killed_worker_process_job_is_reclaimed_and_done
    honker.db.execute("CREATE TABLE started(job INTEGER, pid INTEGER)")
    honker.db.execute("CREATE TABLE done(job INTEGER, attempts INTEGER)")
    id = honker.enqueue("crash", { "n" => 1 })
    pid = spawn_ruby(<<~RUBY)
      require "honker"
      h = Honker.open(#{@path.inspect})
      Honker::Worker.new(#{@path.inspect}, queue: "crash", lease: 1, heartbeat: 0.2) do |job|
        h.db.execute("INSERT INTO started VALUES (?, ?)", [job.id, Process.pid])
        sleep
      end.run
    RUBY
    eventually("the child to start the job") { count("SELECT count(*) FROM started WHERE job = ?", id) == 1 }
    Process.kill("KILL", pid)
    Process.wait(pid)
    start_worker("crash", lease: 5) do |job|
      honker.db.execute("INSERT INTO done VALUES (?, ?)", [job.id, job.attempts])
    end
    eventually("the reclaimed job done") { count("SELECT count(*) FROM done WHERE job = ?", id) == 1 }
    assert_equal 2, count("SELECT attempts FROM done WHERE job = ?", id)
    eventually("no live jobs") { count("SELECT count(*) FROM honker_jobs").zero? }
    assert_integrity
  end

  def test_term_signal_stops_a_worker_process_gracefully
    honker.db.execute("CREATE TABLE started(job INTEGER)")
    id = honker.enqueue("term", { "n" => 1 })
    pid = spawn_ruby(<<~RUBY)
      require "honker"
      h = Honker.open(#{@path.inspect})
      Honker::Worker.new(#{@path.inspect}, queue: "term") do |job|
        h.db.execute("INSERT INTO started VALUES (?)", [job.id])
        sleep
      end.run(shutdown_timeout: 0.2)
      exit 7
    RUBY
    eventually("started") { count("SELECT count(*) FROM started") == 1 }
    Process.kill("TERM", pid)
    _, status = Process.wait2(pid)
    assert_equal 7, status.exitstatus, "run returned after TERM and the process exited normally"
    job = honker.job(id)
    assert_equal "pending", job["state"]
    assert_equal 0, job["attempts"]
  end

  def test_fresh_process_opening_a_too_new_file_gets_the_code_and_survives
    honker.db.execute("UPDATE honker_meta SET value = value + 1 WHERE key = 'schema_version'")
    honker.close
    pid = spawn_ruby(<<~RUBY)
      require "honker"
      2.times do
        Honker.open(#{@path.inspect})
        exit 3
      rescue Honker::DatabaseError => e
        exit 4 unless e.code == "schema.too_new"
      end
      exit 0
    RUBY
    _, status = Process.wait2(pid)
    assert_equal 0, status.exitstatus, status.inspect
  end

  def test_process_killed_mid_transaction_leaves_no_job
    marker = "#{@path}.intx"
    honker
    pid = spawn_ruby(<<~RUBY)
      require "honker"
      h = Honker.open(#{@path.inspect})
      h.db.execute("BEGIN IMMEDIATE")
      h.enqueue("crash", { "n" => 99 })
      File.write(#{marker.inspect}, "1")
      sleep
    RUBY
    eventually("child inside its transaction") { File.exist?(marker) }
    Process.kill("KILL", pid)
    Process.wait(pid)
    assert_equal 0, count("SELECT count(*) FROM honker_jobs")
    assert honker.enqueue("crash", 1)
    assert_integrity
  end
end
