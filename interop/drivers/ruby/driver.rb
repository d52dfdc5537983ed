# frozen_string_literal: true

# Plays one interop actor (see interop/README.md) through the Ruby gem.
$LOAD_PATH.unshift File.expand_path("../../../bindings/ruby/lib", __dir__)
require "honker"
require "json"

# SQL function per op, its arguments (trailing "?" = optional), and whether its TEXT answer is
# JSON to splice verbatim.
OPS = {
  "queue_configure" => ["honker_queue_configure", %w[queue options], true],
  "claim" => ["honker_claim", %w[queue worker n lease_ms?], true],
  "ack" => ["honker_ack", %w[job_id lease_token], false],
  "retry" => ["honker_retry", %w[job_id lease_token delay_ms? error?], true],
  "fail" => ["honker_fail", %w[job_id lease_token error], false],
  "job" => ["honker_job", %w[job_id], true],
  "dead_requeue" => ["honker_dead_requeue", %w[job_id], false],
  "result_save" => ["honker_result_save", %w[job_id value ttl_ms?], false],
  "result_get" => ["honker_result_get", %w[job_id], true],
  "listen" => ["honker_listen", %w[channel after_id limit], true],
  "listen_wait" => ["honker_listen_wait", %w[channel after_id limit timeout_ms], true],
  "read" => ["honker_read", %w[topic after_offset limit], true],
  "commit_offset" => ["honker_commit_offset", %w[consumer topic offset], false],
  "offset" => ["honker_offset", %w[consumer topic], false],
  "schedule" => ["honker_schedule", %w[name cron queue payload options?], false],
  "cron_next" => ["honker_cron_next", %w[cron after_ms tz?], false],
  "cron_tick" => ["honker_cron_tick", %w[now_ms], true]
}.freeze

class Fail < StandardError
  attr_reader :code

  def initialize(code, msg)
    @code = code
    super(msg)
  end
end

class Actor
  def initialize(path)
    @path = path
    @h = nil
  end

  def handle(op, args)
    if op == "close"
      @h&.close
      @h = nil
      return "null"
    end
    @h ||= Honker.open(@path)
    db = @h.db
    case op
    when "open" then "null"
    when "begin" then db.execute("BEGIN IMMEDIATE") && "null"
    when "commit" then db.execute("COMMIT") && "null"
    when "rollback" then db.execute("ROLLBACK") && "null"
    when "sql" then sql(db, args["sql"])
    when "enqueue" then enqueue(args)
    when "notify" then @h.value("SELECT honker_notify(?, ?)", args["channel"], args["payload"]).to_s
    when "publish" then @h.value("SELECT honker_publish(?, ?, ?)", args["topic"], args["payload"], args["key"]).to_s
    else
      fn, names, json = OPS.fetch(op) { raise Fail.new("driver.unsupported_op", op) }
      vals = names.map { |n| bind(args[n.delete_suffix("?")]) }
      vals.pop while vals.size > 1 && vals.last.nil? && names[vals.size - 1].end_with?("?")
      v = @h.value("SELECT #{fn}(#{(["?"] * vals.size).join(", ")})", *vals)
      if v.nil? then "null"
      elsif json && v.is_a?(String) then v
      else JSON.generate(v)
      end
    end
  end

  private

  # Payloads come as JSON text and go to honker unchanged; options objects as JSON text.
  def enqueue(args)
    opts = args["options"]
    if opts
      @h.value("SELECT honker_enqueue(?, ?, ?)", args["queue"], args["payload"], JSON.generate(opts)).to_s
    else
      @h.value("SELECT honker_enqueue(?, ?)", args["queue"], args["payload"]).to_s
    end
  end

  def bind(v)
    case v
    when Hash, Array then JSON.generate(v)
    when true then 1
    when false then 0
    else v
    end
  end

  def sql(db, text)
    stmt = db.prepare(text)
    cols = stmt.columns
    rows = stmt.execute.to_a.map { |r| cols.zip(r).to_h }
    stmt.close
    JSON.generate(rows)
  end
end

actor = Actor.new(ARGV.fetch(0))
$stdout.sync = true
$stdin.each_line do |line|
  req = JSON.parse(line)
  begin
    value = actor.handle(req["op"], req["args"] || {})
    $stdout.write(%({"id":#{JSON.generate(req["id"])},"ok":true,"value":#{value}}\n))
  rescue StandardError => e
    code = case e
           when Fail then e.code
           when Honker::Error then e.code
           when SQLite3::BusyException, SQLite3::LockedException then "sqlite.busy"
           when SQLite3::Exception then (Honker::Error.from_driver(e)&.code || "sqlite.error")
           else "driver.failed"
           end
    msg = e.is_a?(Honker::Error) ? e.message.sub(/\A#{Regexp.escape(e.code)}: /, "") : e.message
    $stdout.write(JSON.generate({ id: req["id"], ok: false, error: { code: code, message: msg } }) + "\n")
  end
end
actor.handle("close", {})
