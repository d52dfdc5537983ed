# frozen_string_literal: true

module Honker
  # Fires cron schedules: ticks, then sleeps until the next fire or until any commit (a new or
  # changed schedule). Any number of schedulers in any processes fire each boundary once.
  class Scheduler
    def initialize(path_or_db, on_fire: nil, on_error: nil)
      @path = path_or_db.is_a?(Database) ? path_or_db.path : path_or_db
      @on_fire = on_fire
      @on_error = on_error
      @stopping = false
    end

    def start
      @honker = Honker.open(@path)
      @waiter = @honker.waiter
      @thread = Thread.new { loop_until_stopped }
      self
    end

    def stop
      @stopping = true
      @honker.cancel_wait(@key) if @key
      @thread&.join
      @waiter&.close
      @honker&.close
    end

    private

    def loop_until_stopped
      until @stopping
        epoch = @honker.epoch # sampled before looking: a commit meanwhile ends the wait
        wait_ms = begin
          @honker.tick.each { |f| @on_fire&.call(f) }
          next_fire_in
        rescue StandardError => e
          @on_error&.call(e)
          1000
        end
        @key = @honker.next_key
        begin
          @honker.wait_call(@waiter, "honker_wait", [epoch], wait_ms, key: @key, empty: epoch.to_s, stop: -> { @stopping })
        rescue WaitCancelled
          nil
        end
      end
    end

    def next_fire_in
      now = (Time.now.to_r * 1000).to_i
      fires = @honker.schedules.reject { |s| s["paused"] }.filter_map { |s| s["next_fire_ms"] }
      ((fires.min || (now + 3_600_000)) - now).clamp(1, 3_600_000)
    end
  end
end
