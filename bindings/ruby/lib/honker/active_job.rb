# frozen_string_literal: true

require "active_job"
require "honker"

module Honker
  # ActiveJob integration: `config.active_job.queue_adapter = :honker`.
  #
  # Jobs are enqueued on Honker::ActiveJob.database: by default, when ActiveRecord is loaded on
  # SQLite, the current ActiveRecord connection's raw SQLite3::Database (so `perform_later`
  # inside a model transaction commits or rolls back with it); else Honker.open($HONKER_DB).
  # Run the jobs with Honker::ActiveJob.worker(path, queue: "default").
  module ActiveJob
    class << self
      # A Honker::Database, or a callable returning one (called per enqueue).
      attr_writer :database

      def database
        db = @database
        db = db.call if db.respond_to?(:call)
        db || default_database
      end

      # A Honker::Worker executing the ActiveJob jobs of queue.
      def worker(path, queue: "default", **options)
        Honker::Worker.new(path, queue: queue, **options) do |job|
          ::ActiveJob::Base.execute(job.payload)
        end
      end

      private

      def default_database
        if defined?(::ActiveRecord::Base) && ::ActiveRecord::Base.connection.adapter_name =~ /sqlite/i
          Honker.attach(::ActiveRecord::Base.connection.raw_connection)
        else
          @default ||= Honker.open(ENV.fetch("HONKER_DB") { raise Honker::ArgumentError.new("arg.invalid", "set Honker::ActiveJob.database or $HONKER_DB") })
        end
      end
    end
  end
end

module ActiveJob
  module QueueAdapters
    # The ActiveJob adapter; see Honker::ActiveJob.
    class HonkerAdapter
      def enqueue(job)
        push(job, nil)
      end

      def enqueue_at(job, timestamp)
        push(job, Time.at(timestamp))
      end

      private

      def push(job, run_at)
        id = Honker::ActiveJob.database.enqueue(job.queue_name, job.serialize,
                                                run_at: run_at, priority: job.priority)
        job.provider_job_id = id
        id
      end
    end
  end
end
