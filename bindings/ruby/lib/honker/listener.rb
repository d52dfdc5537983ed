# frozen_string_literal: true

module Honker
  # What Listener and Subscription share: a Waiter connection, a buffer, and a stop that ends a
  # running wait from another thread.
  class BlockingReader
    include Enumerable

    def initialize(honker)
      @honker = honker
      @waiter = honker.waiter
      @buf = []
      @key = nil
      @closed = false
      @lock = Mutex.new
    end

    # The next item, waiting up to timeout seconds (nil: forever); nil on timeout. Raises
    # Honker::ClosedError once closed (also when close ends a running wait).
    def next(timeout: nil)
      deadline = timeout && (now + timeout)
      while @buf.empty?
        raise ClosedError.new("binding.closed", "closed") if @closed

        slice = deadline ? ((deadline - now) * 1000).ceil : 30_000
        return nil if slice <= 0

        @key = @honker.next_key
        begin
          text = @honker.wait_call(@waiter, fn, args, [slice, 30_000].min, key: @key, stop: -> { @closed })
        rescue WaitCancelled
          raise ClosedError.new("binding.closed", "closed") if @closed

          raise
        end
        @buf.concat(JSON.parse(text).map { |h| wrap(h) })
        return nil if @buf.empty? && deadline && now >= deadline
      end
      item = @buf.shift
      advance(item)
      item
    end

    # Yield items as they come until closed.
    def each
      loop { yield self.next }
    rescue ClosedError
      nil
    end

    # Stop (a running #next in another thread raises ClosedError) and release the connection.
    def close
      return if @closed

      @closed = true
      @honker.cancel_wait(@key) if @key
      @lock.synchronize { @waiter.close }
    end

    private

    def now
      Process.clock_gettime(Process::CLOCK_MONOTONIC)
    end
  end

  # Receives the notifications of one channel in id order (Database#listen).
  class Listener < BlockingReader
    attr_reader :channel, :last_id

    def initialize(honker, channel, after)
      super(honker)
      @channel = channel
      @last_id = after
    end

    private

    def fn = "honker_listen_wait"
    def args = [@channel, @last_id, 100]
    def wrap(h) = Notification.new(h)
    def advance(n) = (@last_id = n.id)
  end

  # Reads a stream for a named consumer from its committed offset (Database#subscribe);
  # #commit(event) advances the consumer, in the application's transaction if one is open.
  class Subscription < BlockingReader
    attr_reader :consumer, :topic, :position

    def initialize(honker, consumer, topic, after)
      super(honker)
      @consumer = consumer
      @topic = topic
      @position = after
    end

    def commit(event)
      @honker.commit_offset(@consumer, @topic, event.offset)
    end

    private

    def fn = "honker_read_wait"
    def args = [@topic, @position, 100]
    def wrap(h) = Event.new(h)
    def advance(e) = (@position = e.offset)
  end
end
