defmodule Honker.RunnerTest do
  use ExUnit.Case, async: true
  import Honker.TestHelpers

  setup :tmp_db

  defmodule Mailer do
    use Honker.Worker, queue: "mail"

    @impl true
    def perform(%Honker.Job{args: %{"to" => to, "test" => pid}}) do
      send(:erlang.list_to_pid(String.to_charlist(pid)), {:performed, to})
      :ok
    end
  end

  defmodule Flaky do
    use Honker.Worker, queue: "flaky"

    @impl true
    def perform(%Honker.Job{attempts: 1}), do: {:error, :smtp_down}
    def perform(%Honker.Job{attempts: 2}), do: raise("oops")
    def perform(%Honker.Job{attempts: 3}), do: {:snooze, 1}
    def perform(%Honker.Job{}), do: :ok

    @impl true
    def backoff(_job), do: 1
  end

  defmodule Doomed do
    use Honker.Worker, queue: "doomed"
    @impl true
    def perform(_job), do: {:cancel, :bad_address}
  end

  defmodule Slow do
    use Honker.Worker, queue: "slow"

    @impl true
    def perform(%Honker.Job{args: %{"test" => pid}}) do
      send(:erlang.list_to_pid(String.to_charlist(pid)), :started)
      Process.sleep(:infinity)
    end
  end

  defp me, do: self() |> :erlang.pid_to_list() |> to_string()

  test "runs jobs concurrently under a supervisor and acks them", %{h: h, path: path} do
    for i <- 1..20, do: {:ok, _} = Mailer.enqueue(h, %{to: "u#{i}", test: me()})

    {:ok, sup} =
      Supervisor.start_link([{Honker.Runner, worker: Mailer, path: path, concurrency: 4}], strategy: :one_for_one)

    got = for _ <- 1..20, do: assert_receive({:performed, to}, 20_000) && to
    assert Enum.sort(got) == Enum.sort(for i <- 1..20, do: "u#{i}")
    eventually("all acked", fn -> one(h, "SELECT count(*) FROM honker_jobs") == 0 end)
    Supervisor.stop(sup)
  end

  test "errors, raises and snoozes retry; cancel dead-letters", %{h: h, path: path} do
    {:ok, id} = Flaky.enqueue(h, %{})
    {:ok, dead} = Doomed.enqueue(h, %{})
    {:ok, r1} = Honker.Runner.start_link(worker: Flaky, path: path)
    {:ok, r2} = Honker.Runner.start_link(worker: Doomed, path: path)
    eventually("flaky done", fn -> Honker.job(h, id) == {:ok, nil} end)
    eventually("doomed dead", fn -> match?({:ok, %{"state" => "dead"}}, Honker.job(h, dead)) end)
    {:ok, j} = Honker.job(h, dead)
    assert j["attempts"] == 1
    assert j["last_error"] =~ "bad_address"
    GenServer.stop(r1)
    GenServer.stop(r2)
  end

  test "shutdown releases held jobs without using an attempt", %{h: h, path: path} do
    {:ok, id} = Slow.enqueue(h, %{test: me()})

    {:ok, sup} =
      Supervisor.start_link([{Honker.Runner, worker: Slow, path: path, shutdown_ms: 100}], strategy: :one_for_one)

    assert_receive :started, 20_000
    Supervisor.stop(sup)
    assert {:ok, %{"state" => "pending", "attempts" => 0}} = Honker.job(h, id)
  end

  test "heartbeats keep a long job leased and a timeout retries it", %{h: h, path: path} do
    {:ok, id} = Slow.enqueue(h, %{test: me()})
    {:ok, r} = Honker.Runner.start_link(worker: Slow, path: path, lease_ms: 300, heartbeat_ms: 50, timeout_ms: 2_000)
    assert_receive :started, 20_000
    first = one(h, "SELECT lease_expires FROM honker_jobs WHERE id = ?", [id])

    eventually("lease extended", fn ->
      (one(h, "SELECT lease_expires FROM honker_jobs WHERE id = ?", [id]) || 0) > first
    end)

    # The 2 s handler timeout kills the attempt; the job is retried (a second :started).
    assert_receive :started, 30_000
    {:ok, j} = Honker.job(h, id)
    assert j["attempts"] >= 2
    GenServer.stop(r)
  end

  test "a fresh VM opening a too-new file gets the code and survives", %{h: h, path: path} do
    {:ok, _} = Honker.query(h, "UPDATE honker_meta SET value = value + 1 WHERE key = 'schema_version'")

    code = """
    for _ <- 1..2 do
      {:error, %Honker.Error{code: "schema.too_new"}} = Honker.open(#{inspect(path)})
      {:ok, w} = Honker.Waiter.open(#{inspect(path)}, Honker.extension_path()) |> then(fn
        {:error, %Honker.Error{code: "schema.too_new"}} -> {:ok, nil}
        other -> other
      end)
      nil = w
    end
    System.halt(0)
    """

    ebin = :code.lib_dir(:honker, :ebin) |> to_string()
    {out, status} = System.cmd(System.find_executable("elixir"), ["-pa", ebin, "-e", code], stderr_to_stdout: true)
    assert status == 0, out
  end

  test "a worker OS process killed with kill -9 loses no job", %{h: h, path: path} do
    {:ok, _} = Honker.query(h, "CREATE TABLE started(job INTEGER)")
    {:ok, _} = Honker.query(h, "CREATE TABLE done(job INTEGER, attempts INTEGER)")
    {:ok, id} = Honker.enqueue(h, "crash", %{n: 1})

    code = """
    defmodule Hang do
      use Honker.Worker, queue: "crash"
      def perform(job) do
        {:ok, h} = Honker.open(#{inspect(path)})
        {:ok, _} = Honker.query(h, "INSERT INTO started VALUES (?)", [job.id])
        Process.sleep(:infinity)
      end
    end
    {:ok, _} = Honker.Runner.start_link(worker: Hang, path: #{inspect(path)}, lease_ms: 1_000, heartbeat_ms: 200)
    Process.sleep(:infinity)
    """

    ebin = :code.lib_dir(:honker, :ebin) |> to_string()
    elixir = System.find_executable("elixir")
    port = Port.open({:spawn_executable, elixir}, [:binary, :exit_status, args: ["-pa", ebin, "-e", code]])
    {:os_pid, os_pid} = Port.info(port, :os_pid)
    eventually("the child to start the job", fn -> one(h, "SELECT count(*) FROM started") == 1 end)
    # `elixir` execs erl: the port's OS pid is the BEAM itself.
    {_, 0} = System.cmd("kill", ["-9", Integer.to_string(os_pid)])
    assert_receive {^port, {:exit_status, 137}}, 20_000

    defmodule Finish do
      use Honker.Worker, queue: "crash"

      def perform(job) do
        {:ok, h} = Honker.open(Process.get(:path) || System.get_env("HONKER_TEST_DB"))
        {:ok, _} = Honker.query(h, "INSERT INTO done VALUES (?, ?)", [job.id, job.attempts])
        Honker.close(h)
        :ok
      end
    end

    System.put_env("HONKER_TEST_DB", path)
    {:ok, r} = Honker.Runner.start_link(worker: Finish, path: path, lease_ms: 5_000)
    eventually("the reclaimed job done", fn -> one(h, "SELECT count(*) FROM done") == 1 end)
    assert one(h, "SELECT attempts FROM done WHERE job = ?", [id]) == 2
    eventually("no live jobs", fn -> one(h, "SELECT count(*) FROM honker_jobs") == 0 end)
    assert one(h, "PRAGMA integrity_check") == "ok"
    GenServer.stop(r)
  end
end
