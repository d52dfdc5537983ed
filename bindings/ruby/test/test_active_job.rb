# frozen_string_literal: true

require_relative "test_helper"
require "honker/active_job"

class HonkerTestMailJob < ActiveJob::Base
  queue_as :mailers
  RUNS = Queue.new

  def perform(to, opts)
    RUNS << [to, opts]
  end
end

class TestActiveJob < Minitest::Test
  include HonkerTestHelpers

  def setup
    super
    ActiveJob::Base.logger = Logger.new(nil)
    ActiveJob::Base.queue_adapter = :honker
    Honker::ActiveJob.database = honker
  end

  def teardown
    Honker::ActiveJob.database = nil
    super
  end

  def test_queue_adapter_symbol_resolves_to_honker
    assert_kind_of ActiveJob::QueueAdapters::HonkerAdapter, ActiveJob::Base.queue_adapter
  end

  def test_perform_later_enqueues_and_the_worker_executes
    job = HonkerTestMailJob.perform_later("ada@example.com", { "lang" => "en" })
    refute_nil job.provider_job_id
    row = honker.job(job.provider_job_id)
    assert_equal "mailers", row["queue"]
    assert_equal "HonkerTestMailJob", row["payload"]["job_class"]
    w = Honker::ActiveJob.worker(@path, queue: "mailers").start
    assert_equal ["ada@example.com", { "lang" => "en" }], HonkerTestMailJob::RUNS.pop
    eventually("acked") { honker.job(job.provider_job_id).nil? }
  ensure
    w&.stop(timeout: 5)
  end

  def test_set_wait_schedules_for_later
    job = HonkerTestMailJob.set(wait: 3600).perform_later("later@example.com", {})
    row = honker.job(job.provider_job_id)
    assert_equal "scheduled", row["state"]
    assert_operator row["run_at_ms"], :>, (Time.now.to_f * 1000).to_i + 3_000_000
  end

  def test_perform_later_inside_a_rolled_back_transaction_enqueues_nothing
    assert_raises(RuntimeError) do
      honker.transaction do
        HonkerTestMailJob.perform_later("x@example.com", {})
        raise "roll back"
      end
    end
    assert_equal 0, count("SELECT count(*) FROM honker_jobs")
  end
end
