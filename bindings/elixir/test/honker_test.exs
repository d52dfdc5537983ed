defmodule HonkerTest do
  use ExUnit.Case, async: true
  import Honker.TestHelpers
  alias Honker.Error

  setup :tmp_db

  test "open applies honker's settings and refuses memory", %{h: h} do
    assert one(h, "PRAGMA journal_mode") == "wal"
    assert one(h, "PRAGMA busy_timeout") == 5000
    assert one(h, "PRAGMA foreign_keys") == 1
    assert one(h, "PRAGMA synchronous") == 1
    assert {:error, %Error{code: "db.not_file"}} = Honker.open(":memory:")
  end

  test "a missing extension is ext.load naming the path", %{path: path} do
    assert {:error, %Error{code: "ext.load", message: msg}} = Honker.open(path, extension: "/nope/libhonker_ext.so")
    assert msg =~ "/nope/libhonker_ext.so"
  end

  test "a too-new schema is its own code, not ext.load", %{h: h, path: path} do
    {:ok, _} = Honker.query(h, "UPDATE honker_meta SET value = 999 WHERE key = 'schema_version'")
    assert {:error, %Error{code: "schema.too_new"}} = Honker.open(path)
  end

  test "enqueue commits or rolls back with the caller's transaction", %{h: h} do
    {:ok, _} = Honker.query(h, "CREATE TABLE orders(id INTEGER PRIMARY KEY)")

    assert {:error, :changed_mind} =
             Honker.transaction(h, fn ->
               {:ok, _} = Honker.query(h, "INSERT INTO orders VALUES (1)")
               {:ok, _} = Honker.enqueue(h, "emails", %{order: 1})
               {:ok, _} = Honker.notify(h, "orders", 1)
               Honker.rollback(h, :changed_mind)
             end)

    assert one(h, "SELECT count(*) FROM honker_jobs") == 0
    assert one(h, "SELECT count(*) FROM honker_notifications") == 0
    assert one(h, "SELECT count(*) FROM orders") == 0

    assert_raise RuntimeError, fn ->
      Honker.transaction(h, fn ->
        {:ok, _} = Honker.enqueue(h, "emails", %{order: 2})
        raise "boom"
      end)
    end

    assert one(h, "SELECT count(*) FROM honker_jobs") == 0

    {:ok, {:ok, id}} =
      Honker.transaction(h, fn ->
        {:ok, _} = Honker.query(h, "INSERT INTO orders VALUES (3)")
        Honker.enqueue(h, "emails", %{order: 3, name: "Zoë"})
      end)

    assert {:ok, %{"payload" => %{"order" => 3, "name" => "Zoë"}}} = Honker.job(h, id)
  end

  test "bad input is a tagged error with the code and writes nothing", %{h: h} do
    cases = [
      {fn -> Honker.enqueue(h, "q", %{n: Integer.pow(2, 60)}) end, "payload.not_json"},
      {fn -> Honker.enqueue(h, "q", [-Integer.pow(2, 53) - 1]) end, "payload.not_json"},
      {fn -> Honker.enqueue(h, "q", {:tuple}) end, "payload.not_json"},
      {fn -> Honker.enqueue(h, "q", %{1 => 2}) end, "payload.not_json"},
      {fn -> Honker.enqueue(h, "q", <<255>>) end, "payload.not_json"},
      {fn -> Honker.notify(h, "c", %{t: DateTime.utc_now()}) end, "payload.not_json"},
      {fn -> Honker.enqueue(h, "", 1) end, "queue.bad_name"},
      {fn -> Honker.enqueue(h, "q", 1, delay: 1, run_at: 5) end, "queue.bad_option"},
      {fn -> Honker.enqueue(h, "q", 1, soon: true) end, "queue.unknown_option"},
      {fn -> Honker.schedule(h, "s", "nope", "q") end, "cron.bad_expression"},
      {fn -> Honker.schedule(h, "s", "* * * * *", "q", %{}, tz: "Mars/Base") end, "cron.unknown_zone"},
      {fn -> Honker.ack(h, 12_345, 1) end, "queue.lease_lost"},
      {fn -> Honker.publish(h, "", 1) end, "stream.bad_topic"}
    ]

    for {call, code} <- cases do
      assert {:error, %Error{code: ^code}} = call.()
    end

    for t <- ~w(honker_jobs honker_notifications honker_schedules honker_streams) do
      assert one(h, "SELECT count(*) FROM #{t}") == 0, t
    end

    assert {:ok, _} = Honker.enqueue(h, "q", %{n: Integer.pow(2, 53), s: "12345678901234567890"})
  end

  test "SQLITE_BUSY stays the driver's own error", %{h: h, path: path} do
    name = :"busy_#{System.unique_integer([:positive])}"
    {:ok, _} = :sqlite3.open(name, file: String.to_charlist(path))
    {:ok, other} = Honker.attach(name)
    {:ok, _} = Honker.query(other, "PRAGMA busy_timeout=0")

    Honker.transaction(h, fn ->
      {:ok, _} = Honker.enqueue(h, "q", 1)
      assert {:error, {:sqlite3, 5, _}} = Honker.enqueue(other, "q", 2)
    end)

    :sqlite3.close(name)
  end

  test "claim, ack, retry, dead letter and requeue", %{h: h} do
    {:ok, _} = Honker.configure_queue(h, "q", max_attempts: 2)
    {:ok, [_, _]} = Honker.enqueue_many(h, "q", [%{n: 1}, %{n: 2}])
    {:ok, [a, b]} = Honker.claim(h, "q", "w", 10, 60_000)
    assert {:ok, true} = Honker.ack(h, a.id, a.lease_token)
    assert {:error, %Error{code: "queue.lease_lost"}} = Honker.ack(h, a.id, a.lease_token)
    assert {:ok, %{"state" => "retrying"}} = Honker.retry(h, b.id, b.lease_token, 0, "boom")
    {:ok, [again]} = Honker.claim(h, "q", "w")
    assert again.attempts == 2
    assert {:ok, %{"state" => "dead"}} = Honker.retry(h, again.id, again.lease_token, 0)
    assert {:ok, %{"dead" => 1}} = Honker.stats(h, "q")
    assert {:ok, true} = Honker.requeue_dead(h, b.id)
  end

  test "listen delivers notifications from another connection as messages", %{h: h, path: path} do
    {:ok, _} = Honker.notify(h, "ch", "old")
    {:ok, l} = Honker.listen(h, "ch")
    {:ok, other} = Honker.open(path)
    {:ok, _} = Honker.notify(other, "ch", %{hello: "world"})
    assert_receive {:honker_notification, ^l, %{"payload" => %{"hello" => "world"}}}, 20_000
    refute_received {:honker_notification, ^l, %{"payload" => "old"}}
    :ok = Honker.unlisten(l)
    Honker.close(other)
  end

  test "the BEAM and other connections keep running while listeners and workers wait", %{h: h, path: path} do
    {:ok, _l1} = Honker.listen(h, "quiet-1")
    {:ok, _l2} = Honker.listen(h, "quiet-2")
    {:ok, r} = Honker.Runner.start_link(worker: HonkerTest.Idle, path: path)
    parent = self()

    ticker =
      spawn_link(fn ->
        Enum.each(1..20, fn i ->
          Process.sleep(10)
          send(parent, {:tick, i})
        end)
      end)

    for i <- 1..20, do: assert_receive({:tick, ^i}, 5_000)
    # A write on another connection completes while three waits are blocked.
    {:ok, other} = Honker.open(path)
    assert {:ok, _} = Honker.enqueue(other, "elsewhere", 1)
    {:ok, l3} = Honker.listen(h, "loud")
    {:ok, _} = Honker.notify(other, "loud", 1)
    assert_receive {:honker_notification, ^l3, _}, 20_000
    refute Process.alive?(ticker)
    GenServer.stop(r)
    Honker.close(other)
  end

  defmodule Idle do
    use Honker.Worker, queue: "idle-never"
    @impl true
    def perform(_job), do: :ok
  end

  test "streams: read_wait, and the offset commits with the handler's effect", %{h: h} do
    {:ok, _} = Honker.query(h, "CREATE TABLE totals(n INTEGER)")
    {:ok, _} = Honker.query(h, "INSERT INTO totals VALUES (0)")
    for i <- 1..3, do: {:ok, _} = Honker.publish(h, "t", %{add: i})
    {:ok, w} = Honker.waiter(h)
    {:ok, [e1, e2 | _]} = Honker.read_wait(h, w, "t", 0, 10, 5_000)

    for e <- [e1, e2] do
      {:ok, _} =
        Honker.transaction(h, fn ->
          {:ok, _} = Honker.query(h, "UPDATE totals SET n = n + ?", [e["payload"]["add"]])
          {:ok, true} = Honker.commit_offset(h, "summer", "t", e["offset"])
        end)
    end

    {:ok, off} = Honker.offset(h, "summer", "t")
    assert {:ok, [%{"payload" => %{"add" => 3}}]} = Honker.read_wait(h, w, "t", off, 10, 5_000)
    assert one(h, "SELECT n FROM totals") == 3
    assert {:error, %Error{code: "stream.offset_ahead"}} = Honker.commit_offset(h, "summer", "t", Integer.pow(2, 40))
    Honker.Waiter.close(w)
  end

  test "listen_wait refuses inside a transaction, wakes on a commit and times out empty", %{h: h, path: path} do
    {:ok, w} = Honker.waiter(h)

    assert {:error, %Error{code: "wait.in_transaction"}} =
             Honker.transaction(h, fn -> Honker.listen_wait(h, w, "lw", 0, 10, 1_000) end) |> elem(1)

    assert {:ok, []} = Honker.listen_wait(h, w, "lw", 0, 10, 50)
    parent = self()

    spawn_link(fn ->
      Process.sleep(200)
      {:ok, other} = Honker.open(path)
      send(parent, {:notified, Honker.notify(other, "lw", %{n: 1})})
      Honker.close(other)
    end)

    # The waiter reports to its owner: the test process blocks, the notifier runs meanwhile.
    assert {:ok, [%{"id" => id, "payload" => %{"n" => 1}}]} = Honker.listen_wait(h, w, "lw", 0, 10, 20_000)
    assert_receive {:notified, {:ok, ^id}}, 20_000
    # Already there: answered on the caller's connection without the waiter.
    assert {:ok, [%{"id" => ^id}]} = Honker.listen_wait(h, w, "lw", 0, 10, 20_000)
    Honker.Waiter.close(w)
  end

  test "locks with fencing tokens, and rate limits", %{h: h} do
    {:ok, a} = Honker.try_lock(h, "job", "a", 60_000)
    assert is_integer(a)
    assert {:ok, nil} = Honker.try_lock(h, "job", "b", 60_000)
    assert {:ok, true} = Honker.renew_lock(h, "job", a, 60_000)
    assert {:ok, true} = Honker.release_lock(h, "job", a)
    {:ok, b} = Honker.try_lock(h, "job", "b", 60_000)
    assert b > a
    admitted = Enum.count(1..5, fn _ -> Honker.allow(h, "api", 3, 3_600_000) == {:ok, true} end)
    assert admitted == 3
  end

  test "a supervised scheduler fires into the queue", %{h: h, path: path} do
    {:ok, _} = Honker.schedule(h, "tick", "@every 100ms", "cronq", %{k: "v"})
    {:ok, sup} = Supervisor.start_link([{Honker.Scheduler, path: path, notify: self()}], strategy: :one_for_one)
    assert_receive {:honker_fired, %{"schedule" => "tick"}}, 20_000
    assert_receive {:honker_fired, %{"schedule" => "tick"}}, 20_000
    Supervisor.stop(sup)
    {:ok, stats} = Honker.stats(h, "cronq")
    assert stats["pending"] + stats["scheduled"] >= 2
    jan1 = DateTime.to_unix(~U[2024-01-01 10:00:00Z], :millisecond)
    assert {:ok, DateTime.to_unix(~U[2024-01-02 09:00:00Z], :millisecond)} == Honker.cron_next(h, "0 9 * * *", jan1)
  end

  test "the cancel path matches the extension", %{h: h} do
    has = one(h, "SELECT count(*) FROM pragma_function_list WHERE name = 'honker_wait_cancel'") > 0
    assert Honker.cancellable_waits?(h) == (has and System.get_env("HONKER_EX_NO_CANCEL") != "1")
  end
end
