defmodule Honker do
  @moduledoc """
  honker for Elixir: durable queues, NOTIFY/LISTEN, streams with per-consumer offsets, cron, locks
  and rate limits inside an SQLite file, as SQL functions of one extension (`libhonker_ext.so`).

      {:ok, h} = Honker.open("app.db")
      {:ok, _} =
        Honker.transaction(h, fn ->
          {:ok, _} = Honker.query(h, "INSERT INTO users(email) VALUES (?)", ["ada@example.com"])
          {:ok, _job_id} = Honker.enqueue(h, "emails", %{to: "ada@example.com"})
        end)

  Writes run on the handle's connection (erlang-p1-sqlite3), so inside `transaction/2` they
  commit or roll back with the business rows. Blocking work (workers, listeners, the scheduler)
  runs on `Honker.Waiter` OS processes, so it never holds up the VM or other connections.

  Functions return `{:ok, value}` or `{:error, %Honker.Error{code: ...}}`; SQLite's own errors
  (busy included) are `{:error, {:sqlite3, code, message}}`. Times are milliseconds.
  """

  defstruct [:db, :path, :ext, :cancellable, owned: true]

  @type t :: %__MODULE__{}
  @type result(v) :: {:ok, v} | {:error, Honker.Error.t() | {:sqlite3, integer, String.t()}}

  @setup_pragmas [
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA wal_autocheckpoint=10000",
    "PRAGMA busy_timeout=5000",
    "PRAGMA foreign_keys=ON"
  ]

  @doc "The extension path: `$HONKER_EXT`, else `$HONKER_EXT_PATH`, else `libhonker_ext`."
  def extension_path do
    System.get_env("HONKER_EXT") || System.get_env("HONKER_EXT_PATH") || "libhonker_ext"
  end

  @doc """
  Open (creating if needed) the SQLite file at `path` on a new erlang-p1-sqlite3 connection,
  load the extension and apply honker's settings (WAL, busy timeout 5 s, ...). In-memory
  databases are refused: wakes need a file. Options: `:extension`.
  """
  @spec open(Path.t(), keyword) :: result(t)
  def open(path, opts \\ []) do
    path = to_string(path)

    if path in ["", ":memory:"] or String.contains?(path, "mode=memory") do
      {:error, Honker.Error.new("db.not_file", "honker needs a database file, not #{inspect(path)}")}
    else
      name = :"honker_db_#{System.unique_integer([:positive])}"

      case :sqlite3.open(name, file: String.to_charlist(Path.expand(path))) do
        {:ok, _pid} -> attach(name, Keyword.put(opts, :setup, true), true)
        {:error, reason} -> {:error, Honker.Error.new("db.open", "cannot open #{path}: #{inspect(reason)}")}
      end
    end
  end

  @doc """
  Load the extension into an application's own erlang-p1-sqlite3 connection (its registered
  name), so enqueue, notify and publish run inside its transactions. `setup: true` also applies
  honker's settings.
  """
  @spec attach(atom, keyword) :: result(t)
  def attach(db, opts \\ []), do: attach(db, opts, false)

  defp attach(db, opts, owned) do
    ext = Keyword.get(opts, :extension, extension_path())
    h = %__MODULE__{db: db, ext: ext, owned: owned}

    with :ok <- ensure_extension(h),
         :ok <- if(opts[:setup], do: setup(h), else: :ok),
         {:ok, path} <- main_path(h),
         {:ok, rows} <-
           query(
             h,
             "SELECT name, narg FROM pragma_function_list WHERE name IN ('honker_wait_cancel', 'honker_claim_wait')"
           ) do
      cancellable =
        Enum.any?(rows, &match?(["honker_wait_cancel", _], &1)) and
          Enum.any?(rows, fn [n, a] -> n == "honker_claim_wait" and a in [6, -1] end) and
          System.get_env("HONKER_EX_NO_CANCEL") != "1"

      {:ok, %{h | path: path, cancellable: cancellable}}
    else
      {:error, _} = e ->
        if owned, do: :sqlite3.close(db)
        e
    end
  end

  defp ensure_extension(h) do
    case value(h, "SELECT honker_version()", []) do
      {:ok, _} ->
        :ok

      _ ->
        prime(h.ext)
        :ok = :sqlite3.enable_load_extension(h.db, 1)

        case query(h, "SELECT load_extension(?)", [h.ext]) do
          {:ok, _} ->
            :sqlite3.enable_load_extension(h.db, 0)
            :ok

          # Loaded, but its init refused the file (schema.too_new, ...): that code.
          {:error, %Honker.Error{}} = e ->
            e

          {:error, {:sqlite3, _, msg}} ->
            {:error,
             Honker.Error.new(
               "ext.load",
               "cannot load the honker extension from #{inspect(h.ext)} (set HONKER_EXT to its path): #{msg}"
             )}
        end
    end
  end

  # Load the extension once per VM into an in-memory connection kept open. It loads permanently,
  # so a later load whose init fails on a file (schema.too_new) cannot leave SQLite calling into
  # an unmapped library (SQLite dlcloses an extension whose init failed; the first such load in a
  # process otherwise crashes it at close).
  defp prime(ext) do
    key = {__MODULE__, :primed, ext}

    if :persistent_term.get(key, false) == false do
      name = :"honker_prime_#{System.unique_integer([:positive])}"
      # Not linked to the caller: it must outlive whoever opened first.
      {:ok, pid} = :sqlite3.open(name, file: ':memory:')
      Process.unlink(pid)
      :ok = :sqlite3.enable_load_extension(name, 1)
      :sqlite3.sql_exec(name, "SELECT load_extension(?)", [ext])
      :persistent_term.put(key, true)
    end
  end

  defp setup(h) do
    case value(h, "SELECT honker_setup()", []) do
      {:ok, _} ->
        :ok

      {:error, {:sqlite3, _, "no such function" <> _}} ->
        Enum.each(@setup_pragmas, fn p -> {:ok, _} = query(h, p, []) end)

      {:error, _} = e ->
        e
    end
  end

  defp main_path(h) do
    case query(h, "SELECT file FROM pragma_database_list WHERE name = 'main'", []) do
      {:ok, [[path]]} when path != "" -> {:ok, path}
      _ -> {:error, Honker.Error.new("db.not_file", "honker needs a database file")}
    end
  end

  @doc "Close a handle made by `open/2` (an attached connection stays open)."
  def close(%__MODULE__{owned: true, db: db}) do
    :sqlite3.close(db)
  catch
    # The connection process is linked to the process that opened it, and may be gone already.
    :exit, _ -> :ok
  end

  def close(%__MODULE__{}), do: :ok

  @doc "Whether waits stop through the extension's cancel keys (else in 200 ms slices)."
  def cancellable_waits?(%__MODULE__{cancellable: c}), do: c

  # --- SQL plumbing --------------------------------------------------------------------------

  @doc "Run one statement of your own; rows as lists of values (NULL as nil)."
  @spec query(t, iodata, list) :: result([list])
  def query(%__MODULE__{db: db}, sql, params \\ []) do
    case :sqlite3.sql_exec(db, sql, Enum.map(params, &param/1)) do
      :ok -> {:ok, []}
      {:rowid, _} -> {:ok, []}
      {:count, _} -> {:ok, []}
      [columns: _, rows: rows] -> {:ok, Enum.map(rows, &row/1)}
      [{:columns, _}, {:rows, _}, {:error, code, msg}] -> Honker.Error.from_driver(code, msg)
      {:error, code, msg} -> Honker.Error.from_driver(code, msg)
      other -> {:error, {:sqlite3, -1, inspect(other)}}
    end
  end

  defp row(t),
    do:
      t
      |> Tuple.to_list()
      |> Enum.map(fn
        :null -> nil
        v -> v
      end)

  defp param(nil), do: :null
  defp param(v), do: v

  @doc false
  def value(h, sql, params) do
    case query(h, sql, params) do
      {:ok, [[v]]} -> {:ok, v}
      {:ok, []} -> {:ok, nil}
      e -> e
    end
  end

  defp json_value(h, sql, params) do
    with {:ok, text} <- value(h, sql, params), do: {:ok, Honker.JSON.decode(text)}
  end

  defp bool_value(h, sql, params) do
    with {:ok, n} <- value(h, sql, params), do: {:ok, n == 1}
  end

  @doc """
  Run `fun` in a `BEGIN IMMEDIATE` transaction on the handle's connection: `{:ok, fun_result}`
  after COMMIT, `{:error, reason}` after `rollback/2`, and a raise rolls back and re-raises.
  The connection is one SQLite connection: keep a transaction to the process that runs it.
  """
  def transaction(h, fun) do
    with {:ok, _} <- query(h, "BEGIN IMMEDIATE") do
      try do
        result = fun.()

        case query(h, "COMMIT") do
          {:ok, _} -> {:ok, result}
          e -> query(h, "ROLLBACK") && e
        end
      catch
        :throw, {:honker_rollback, reason} ->
          query(h, "ROLLBACK")
          {:error, reason}

        kind, reason ->
          query(h, "ROLLBACK")
          :erlang.raise(kind, reason, __STACKTRACE__)
      end
    end
  end

  @doc "Roll the current `transaction/2` back; it returns `{:error, reason}`."
  def rollback(_h, reason), do: throw({:honker_rollback, reason})

  # --- queue ---------------------------------------------------------------------------------

  @doc """
  Add a job to `queue` (inside the caller's `transaction/2` if one is open). Options:
  `:delay` (ms), `:run_at` (DateTime or ms), `:priority`, `:max_attempts`, `:expires_in` (ms),
  `:dedup_key`. Returns the job id.
  """
  @spec enqueue(t, String.t(), term, keyword) :: result(integer)
  def enqueue(h, queue, payload, opts \\ []) do
    with {:ok, body} <- Honker.JSON.encode(payload),
         {:ok, o} <- enqueue_options(opts) do
      if o,
        do: value(h, "SELECT honker_enqueue(?, ?, ?)", [queue, body, o]),
        else: value(h, "SELECT honker_enqueue(?, ?)", [queue, body])
    end
  end

  @doc "Add several jobs in one statement; their ids."
  def enqueue_many(h, queue, payloads, opts \\ []) do
    with {:ok, bodies} <- encode_all(payloads),
         {:ok, o} <- enqueue_options(opts) do
      json_value(h, "SELECT honker_enqueue_batch(?, ?, ?)", [queue, "[" <> Enum.join(bodies, ",") <> "]", o])
    end
  end

  defp encode_all(list) do
    Enum.reduce_while(list, {:ok, []}, fn p, {:ok, acc} ->
      case Honker.JSON.encode(p) do
        {:ok, b} -> {:cont, {:ok, [b | acc]}}
        e -> {:halt, e}
      end
    end)
    |> case do
      {:ok, l} -> {:ok, Enum.reverse(l)}
      e -> e
    end
  end

  @enqueue_keys %{
    delay: "delay_ms",
    run_at: "run_at_ms",
    priority: "priority",
    max_attempts: "max_attempts",
    expires_in: "expires_in_ms",
    dedup_key: "dedup_key"
  }

  defp enqueue_options([]), do: {:ok, nil}

  defp enqueue_options(opts) do
    Enum.reduce_while(opts, {:ok, %{}}, fn {k, v}, {:ok, acc} ->
      case Map.fetch(@enqueue_keys, k) do
        {:ok, key} -> {:cont, {:ok, Map.put(acc, key, option_value(v))}}
        :error -> {:halt, {:error, Honker.Error.new("queue.unknown_option", "unknown option #{inspect(k)}")}}
      end
    end)
    |> case do
      {:ok, m} when map_size(m) == 0 -> {:ok, nil}
      {:ok, m} -> Honker.JSON.encode(m)
      e -> e
    end
  end

  defp option_value(%DateTime{} = t), do: DateTime.to_unix(t, :millisecond)
  defp option_value(v), do: v

  @doc "Take up to `n` due jobs without waiting (`%Honker.Job{}`)."
  def claim(h, queue, worker, n \\ 1, lease_ms \\ nil) do
    with {:ok, list} <- json_value(h, "SELECT honker_claim(?, ?, ?, ?)", [queue, worker, n, lease_ms]),
         do: {:ok, Enum.map(list, &Honker.Job.from_map/1)}
  end

  @doc "Complete a held job."
  def ack(h, id, token), do: bool_value(h, "SELECT honker_ack(?, ?)", [id, token])

  @doc "Retry a held job after `delay_ms` (nil: the queue's backoff): `%{\"state\" => ...}`."
  def retry(h, id, token, delay_ms \\ nil, error \\ nil),
    do: json_value(h, "SELECT honker_retry(?, ?, ?, ?)", [id, token, delay_ms, error])

  @doc "Give a held job back without using an attempt."
  def release(h, id, token), do: bool_value(h, "SELECT honker_release(?, ?)", [id, token])

  @doc "Dead-letter a held job."
  def fail(h, id, token, error), do: bool_value(h, "SELECT honker_fail(?, ?, ?)", [id, token, error])

  @doc "Extend a held job's lease; the new expiry (ms)."
  def heartbeat(h, id, token, extend_ms), do: value(h, "SELECT honker_heartbeat(?, ?, ?)", [id, token, extend_ms])

  @doc "Delete a job that is not running."
  def cancel(h, id), do: bool_value(h, "SELECT honker_cancel(?)", [id])

  @doc "A job as a map (live, dead or in history), or nil."
  def job(h, id), do: json_value(h, "SELECT honker_job(?)", [id])

  @doc "A queue's counts."
  def stats(h, queue), do: json_value(h, "SELECT honker_queue_stats(?)", [queue])

  @doc "Store a queue's options (`lease_ms: .., max_attempts: .., ...`); all of them."
  def configure_queue(h, queue, opts) do
    with {:ok, o} <- Honker.JSON.encode(Map.new(opts)),
         do: json_value(h, "SELECT honker_queue_configure(?, ?)", [queue, o])
  end

  @doc "Dead letters of a queue, newest first."
  def dead_jobs(h, queue, limit \\ 100), do: json_value(h, "SELECT honker_dead_list(?, ?)", [queue, limit])

  @doc "Move a dead letter back to its queue."
  def requeue_dead(h, id), do: bool_value(h, "SELECT honker_dead_requeue(?)", [id])

  # --- pub/sub -------------------------------------------------------------------------------

  @doc "Publish `payload` on `channel` (inside the caller's transaction if open); its id."
  def notify(h, channel, payload) do
    with {:ok, body} <- Honker.JSON.encode(payload), do: value(h, "SELECT honker_notify(?, ?)", [channel, body])
  end

  @doc """
  Deliver the notifications of `channel` to the calling process as
  `{:honker_notification, listener, %{"id" => .., "channel" => .., "payload" => .., "created_ms" => ..}}`,
  from a linked listener process with a waiter of its own. Options: `after: id` (default: only
  new ones). Stop it with `unlisten/1`.
  """
  def listen(h, channel, opts \\ []) do
    Honker.Listener.start_link(h, channel, self(), opts)
  end

  @doc "Stop a listener."
  def unlisten(listener), do: GenServer.stop(listener)

  # --- streams -------------------------------------------------------------------------------

  @doc "Append an event to a topic (key optional); its offset."
  def publish(h, topic, payload, key \\ nil) do
    with {:ok, body} <- Honker.JSON.encode(payload),
         do: value(h, "SELECT honker_publish(?, ?, ?)", [topic, body, key])
  end

  @doc "Up to `limit` events of `topic` after `offset`, without waiting."
  def read(h, topic, after_offset \\ 0, limit \\ 100),
    do: json_value(h, "SELECT honker_read(?, ?, ?)", [topic, after_offset, limit])

  @doc """
  Wait up to `timeout_ms` for events of `topic` after `offset` on a waiter of your own (see
  `waiter/1`); the calling process blocks, the VM does not. Inside an open transaction on the
  handle it refuses with `wait.in_transaction`.
  """
  def read_wait(h, waiter, topic, after_offset, limit, timeout_ms) do
    with {:ok, text} <- wait_call(h, waiter, "honker_read_wait", [topic, after_offset, limit], timeout_ms),
         do: {:ok, Honker.JSON.decode(text)}
  end

  @doc """
  Wait up to `timeout_ms` for notifications of `channel` after id `after_id` (at most `limit`)
  on a waiter of your own (see `waiter/1`): the array of notifications, `[]` at the timeout, or
  `wait.in_transaction` inside an open transaction on the handle. `listen/3` is the push form.
  """
  def listen_wait(h, waiter, channel, after_id, limit, timeout_ms) do
    with {:ok, text} <- wait_call(h, waiter, "honker_listen_wait", [channel, after_id, limit], timeout_ms),
         do: {:ok, Honker.JSON.decode(text)}
  end

  @doc "Record a consumer's progress (monotonic; inside the caller's transaction if open)."
  def commit_offset(h, consumer, topic, offset),
    do: bool_value(h, "SELECT honker_commit_offset(?, ?, ?)", [consumer, topic, offset])

  @doc "A consumer's committed offset, or nil."
  def offset(h, consumer, topic), do: value(h, "SELECT honker_offset(?, ?)", [consumer, topic])

  # --- cron ----------------------------------------------------------------------------------

  @doc """
  Register or update a schedule enqueuing `payload` on `queue` at every fire; the next fire
  (ms) or nil. Options as the SQL function's (`tz: "Europe/Paris"`, `misfire: "once"`, ...).
  """
  def schedule(h, name, cron, queue, payload \\ %{}, opts \\ []) do
    with {:ok, body} <- Honker.JSON.encode(payload),
         {:ok, o} <- if(opts == [], do: {:ok, nil}, else: Honker.JSON.encode(Map.new(opts))) do
      value(h, "SELECT honker_schedule(?, ?, ?, ?, ?)", [name, cron, queue, body, o])
    end
  end

  def unschedule(h, name), do: bool_value(h, "SELECT honker_unschedule(?)", [name])
  def pause_schedule(h, name), do: bool_value(h, "SELECT honker_schedule_pause(?)", [name])
  def resume_schedule(h, name), do: bool_value(h, "SELECT honker_schedule_resume(?)", [name])
  def schedules(h), do: json_value(h, "SELECT honker_schedules(1)", [])

  @doc "The next fire (ms) of a cron expression after `after_ms`, in `tz` (nil: UTC)."
  def cron_next(h, expr, after_ms, tz \\ nil), do: value(h, "SELECT honker_cron_next(?, ?, ?)", [expr, after_ms, tz])

  @doc "Fire every due boundary once."
  def tick(h), do: json_value(h, "SELECT honker_cron_tick()", [])

  # --- locks and rate limits -----------------------------------------------------------------

  @doc "Take a named lock: `{:ok, token}`, or `{:ok, nil}` when another owner holds it."
  def try_lock(h, name, owner, ttl_ms), do: value(h, "SELECT honker_lock_acquire(?, ?, ?)", [name, owner, ttl_ms])
  def renew_lock(h, name, token, ttl_ms), do: bool_value(h, "SELECT honker_lock_renew(?, ?, ?)", [name, token, ttl_ms])
  def release_lock(h, name, token), do: bool_value(h, "SELECT honker_lock_release(?, ?)", [name, token])

  @doc "Count one use of a fixed-window rate limit: `{:ok, true}` when admitted."
  def allow(h, name, limit, per_ms), do: bool_value(h, "SELECT honker_rate_limit(?, ?, ?)", [name, limit, per_ms])

  # --- waits ---------------------------------------------------------------------------------

  @doc "A waiter (`Honker.Waiter`) on the handle's file, for `read_wait/6` and friends."
  def waiter(h), do: Honker.Waiter.open(h.path, h.ext)

  @doc false
  def next_key, do: "ex-#{System.pid()}-#{System.unique_integer([:positive])}"

  @doc false
  # The SQL of one wait call, with the cancel key when the extension takes one.
  def wait_sql(h, fun, args, timeout_ms, key) do
    if h.cancellable,
      do: Honker.Waiter.call_sql(fun, args ++ [timeout_ms, key]),
      else: Honker.Waiter.call_sql(fun, args ++ [min(timeout_ms, 200)])
  end

  @doc false
  # First the same call with timeout 0 on the caller's own connection: it refuses a wait inside
  # the caller's open transaction (wait.in_transaction: its snapshot would hide the commit waited
  # for, and BEGIN IMMEDIATE's write lock would hold that commit off) and answers at once when
  # something is already there. Only then the waiter blocks, outside any transaction.
  def wait_call(h, waiter, fun, args, timeout_ms) do
    sql = ["SELECT ", fun, "(", Enum.map_intersperse(args ++ [0], ", ", fn _ -> "?" end), ")"]

    case value(h, sql, args ++ [0]) do
      {:ok, "[]"} when timeout_ms > 0 ->
        deadline = System.monotonic_time(:millisecond) + timeout_ms
        do_wait(h, waiter, fun, args, deadline)

      other ->
        other
    end
  end

  defp do_wait(h, waiter, fun, args, deadline) do
    left = max(deadline - System.monotonic_time(:millisecond), 1)

    case Honker.Waiter.query(waiter, wait_sql(h, fun, args, left, next_key())) do
      {:ok, "[]"} when not h.cancellable ->
        if left > 200, do: do_wait(h, waiter, fun, args, deadline), else: {:ok, "[]"}

      other ->
        other
    end
  end

  @doc false
  def cancel_wait(h, key) do
    if h.cancellable, do: value(h, "SELECT honker_wait_cancel(?)", [key]), else: {:ok, 0}
  end

  @doc "The current wake epoch of the file."
  def epoch(h), do: value(h, "SELECT honker_epoch()", [])
end
