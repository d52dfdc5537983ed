# frozen_string_literal: true

module Honker
  # A threaded worker for one queue: `concurrency` handler threads, automatic heartbeats,
  # retries from exceptions (with a delay), and a graceful stop that releases held jobs without
  # using an attempt.
  #
  #   worker = Honker::Worker.new("app.db", queue: "emails", concurrency: 4) do |job|
  #     deliver(job.payload)        # raise to retry; raise Honker::Worker::Retry.new(delay: 5) to pick the delay
  #   end
  #   worker.run                    # blocks; INT/TERM stop it gracefully
  class Worker
    # Raised by a handler: retry after delay seconds.
    class Retry < StandardError
      attr_reader :delay

      def initialize(message = "retry", delay: nil)
        super(message)
        @delay = delay
      end
    end

    # Raised by a handler: dead-letter the job now, whatever attempts are left.
    class Discard < StandardError; end

    # Raised inside handler threads that outlive Stop's timeout.
    class Shutdown < Exception; end # rubocop:disable Lint/InheritException

    attr_reader :name, :queue

    # path_or_db: a database path, or a Honker::Database (the worker opens its own connection to
    # the same file either way). transactional: true runs the handler inside a transaction on
    # the handler thread's own connection, acking in it; the block gets (job, honker).
    def initialize(path_or_db, queue:, concurrency: 1, lease: 30, heartbeat: nil, timeout: nil,
                   retry_delay: nil, transactional: false, name: nil, on_error: nil, handler: nil, &block)
      @path = path_or_db.is_a?(Database) ? path_or_db.path : path_or_db
      @queue = queue
      @concurrency = concurrency
      @lease = lease
      @heartbeat = heartbeat || lease / 3.0
      @timeout = timeout
      @retry_delay = retry_delay
      @transactional = transactional
      @handler = handler || block or raise ::ArgumentError, "a handler (block or handler:) is required"
      @name = name || "rb-#{Socket.gethostname rescue 'host'}-#{Process.pid}-#{object_id}"
      @on_error = on_error
      @held = {} # id => [job, thread]
      @lock = Mutex.new
      @slot_free = ConditionVariable.new
      @busy = 0
      @stopping = false
      @threads = []
    end

    def start
      @honker = Honker.open(@path)
      @waiter = @honker.waiter
      @jobs = Thread::Queue.new
      @threads = Array.new(@concurrency) { Thread.new { handler_loop } }
      @claimer = Thread.new { claim_loop }
      @beater = Thread.new { heartbeat_loop }
      self
    end

    # Stop claiming, let running jobs finish for up to timeout seconds, then release the held
    # jobs (no attempt used) and interrupt their handlers. Returns true when all finished in time.
    def stop(timeout: 30)
      @lock.synchronize do
        return true if @stopping

        @stopping = true
        @slot_free.broadcast
      end
      @honker.cancel_wait(@claim_key) if @claim_key
      @claimer&.join
      @concurrency.times { @jobs << nil }
      deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + timeout
      finished = @threads.all? { |t| t.join([deadline - Process.clock_gettime(Process::CLOCK_MONOTONIC), 0].max) }
      unless finished
        held = @lock.synchronize { @held.dup }
        held.each_value do |job, thread|
          safely { @honker.release(job.id, job.lease_token) }
          thread.raise(Shutdown)
        end
        @threads.each { |t| t.join(5) }
      end
      @beater&.wakeup rescue nil # rubocop:disable Style/RescueModifier
      @beater&.join
      @waiter&.close
      @honker&.close
      finished
    end

    # Start, block until INT or TERM, then stop gracefully.
    def run(shutdown_timeout: 30)
      r, w = IO.pipe
      old = %w[INT TERM].to_h { |sig| [sig, Signal.trap(sig) { w.write_nonblock(".") rescue nil }] } # rubocop:disable Style/RescueModifier
      start
      r.read(1)
      stop(timeout: shutdown_timeout)
    ensure
      old&.each { |sig, h| Signal.trap(sig, h || "DEFAULT") }
      r&.close
      w&.close
    end

    private

    def claim_loop
      until @lock.synchronize { @stopping }
        n = @lock.synchronize do
          @slot_free.wait(@lock) while @busy >= @concurrency && !@stopping
          @concurrency - @busy
        end
        break if @lock.synchronize { @stopping }

        @claim_key = @honker.next_key
        text = begin
          @honker.wait_call(@waiter, "honker_claim_wait", [@queue, @name, n, (@lease * 1000).round], 30_000,
                            key: @claim_key, stop: -> { @stopping })
        rescue WaitCancelled
          break if @stopping

          next
        rescue StandardError => e
          break if @stopping

          report(e)
          sleep 1
          next
        end
        JSON.parse(text).each do |h|
          job = Job.new(h)
          @lock.synchronize { @busy += 1 }
          @jobs << job
        end
      end
    end

    def handler_loop
      conn = @transactional ? Honker.open(@path) : nil
      while (job = @jobs.pop)
        @lock.synchronize { @held[job.id] = [job, Thread.current] }
        begin
          work(job, conn)
        rescue Shutdown
          nil # released by stop
        ensure
          @lock.synchronize do
            @held.delete(job.id)
            @busy -= 1
            @slot_free.signal
          end
        end
      end
    ensure
      conn&.close
    end

    def work(job, conn)
      run_handler(job, conn)
      @transactional ? nil : safely { @honker.ack(job.id, job.lease_token) }
    rescue Shutdown
      raise
    rescue Discard => e
      safely { @honker.fail(job.id, job.lease_token, "#{e.class}: #{e.message}") }
    rescue Exception => e # rubocop:disable Lint/RescueException
      raise unless e.is_a?(StandardError) || e.is_a?(Timeout::Error)

      delay = e.is_a?(Retry) ? e.delay : @retry_delay&.call(job.attempts, e)
      safely { @honker.retry(job.id, job.lease_token, delay: delay, error: "#{e.class}: #{e.message}") }
    end

    def run_handler(job, conn)
      call = lambda do
        if @transactional
          conn.transaction do
            @handler.call(job, conn)
            conn.ack(job.id, job.lease_token) or raise LeaseLost.new("queue.lease_lost", "job #{job.id}")
          end
        else
          @handler.call(job)
        end
      end
      @timeout ? Timeout.timeout(@timeout, &call) : call.call
    end

    def heartbeat_loop
      until @lock.synchronize { @stopping && @held.empty? }
        sleep @heartbeat
        @lock.synchronize { @held.values }.each do |job, thread|
          @honker.heartbeat(job.id, job.lease_token, @lease)
        rescue LeaseLost
          thread.raise(Shutdown) # another worker has it now; stop this handler
        rescue StandardError => e
          report(e)
        end
      end
    end

    def safely
      yield
    rescue LeaseLost => e
      report(e)
    rescue StandardError => e
      report(e)
    end

    def report(err)
      @on_error&.call(err)
    end
  end
end
