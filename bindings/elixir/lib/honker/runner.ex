defmodule Honker.Runner do
  @moduledoc """
  A supervised process running a `Honker.Worker` on its queue: `concurrency` jobs at once, each
  in a process of its own, with automatic heartbeats, retries, handler timeouts and a graceful
  shutdown that releases held jobs without using an attempt.

      children = [
        {Honker.Runner, worker: MyApp.Mailer, path: "app.db", concurrency: 4}
      ]

  Options: `:worker` (required), `:path` (required), `:concurrency` (1), `:lease_ms` (30 000),
  `:heartbeat_ms` (lease / 3), `:timeout_ms` (none), `:shutdown_ms` (10 000: how long a
  shutdown waits for running jobs), `:name`.

  The claim waits on a `Honker.Waiter` OS process; the runner keeps serving its mailbox meanwhile.
  """
  use GenServer
  require Logger

  def child_spec(opts) do
    %{
      id: {__MODULE__, opts[:worker]},
      start: {__MODULE__, :start_link, [opts]},
      shutdown: Keyword.get(opts, :shutdown_ms, 10_000) + 5_000
    }
  end

  def start_link(opts) do
    GenServer.start_link(__MODULE__, opts, Keyword.take(opts, [:name]))
  end

  @impl true
  def init(opts) do
    Process.flag(:trap_exit, true)
    mod = Keyword.fetch!(opts, :worker)
    lease = Keyword.get(opts, :lease_ms, 30_000)

    with {:ok, h} <- Honker.open(Keyword.fetch!(opts, :path)),
         {:ok, w} <- Honker.waiter(h) do
      {:ok, host} = :inet.gethostname()

      s = %{
        h: h,
        waiter: w,
        mod: mod,
        queue: mod.queue(),
        worker_name: "ex-#{host}-#{System.pid()}-#{System.unique_integer([:positive])}",
        concurrency: Keyword.get(opts, :concurrency, 1),
        lease: lease,
        heartbeat: Keyword.get(opts, :heartbeat_ms, div(lease, 3)),
        timeout: Keyword.get(opts, :timeout_ms),
        shutdown: Keyword.get(opts, :shutdown_ms, 10_000),
        running: %{},
        claiming: nil
      }

      Process.send_after(self(), :heartbeat, s.heartbeat)
      {:ok, claim(s)}
    else
      {:error, e} -> {:stop, e}
    end
  end

  defp claim(%{claiming: nil} = s) do
    free = s.concurrency - map_size(s.running)

    if free > 0 do
      key = Honker.next_key()
      sql = Honker.wait_sql(s.h, "honker_claim_wait", [s.queue, s.worker_name, free, s.lease], 30_000, key)
      Honker.Waiter.send_query(s.waiter, sql)
      %{s | claiming: key}
    else
      s
    end
  end

  defp claim(s), do: s

  @impl true
  def handle_info({port, {:data, frame}}, %{waiter: port} = s) do
    s = %{s | claiming: nil}

    case Honker.Waiter.parse(frame) do
      {:ok, text} ->
        s = text |> Honker.JSON.decode() |> Enum.map(&Honker.Job.from_map/1) |> Enum.reduce(s, &start_job/2)
        {:noreply, claim(s)}

      {:error, e} ->
        Logger.warning("honker runner #{s.queue}: claim failed: #{inspect(e)}")
        Process.send_after(self(), :claim, 1_000)
        {:noreply, s}
    end
  end

  def handle_info({port, {:exit_status, st}}, %{waiter: port} = s) do
    {:stop, {:waiter_exited, st}, s}
  end

  def handle_info(:claim, s), do: {:noreply, claim(s)}

  def handle_info({:honker_done, pid, result}, s) do
    case Map.pop(s.running, pid) do
      {nil, _} ->
        {:noreply, s}

      {%{job: job, ref: ref}, running} ->
        Process.demonitor(ref, [:flush])
        settle(s, job, result)
        {:noreply, claim(%{s | running: running})}
    end
  end

  def handle_info({:DOWN, _ref, :process, pid, reason}, s) do
    case Map.pop(s.running, pid) do
      {nil, _} ->
        {:noreply, s}

      {%{job: job}, running} ->
        settle(s, job, {:error, "job process exited: #{inspect(reason)}"})
        {:noreply, claim(%{s | running: running})}
    end
  end

  def handle_info({:job_timeout, pid}, s) do
    if Map.has_key?(s.running, pid), do: Process.exit(pid, :kill)
    {:noreply, s}
  end

  def handle_info(:heartbeat, s) do
    running =
      Enum.reduce(s.running, s.running, fn {pid, %{job: j}}, acc ->
        case Honker.heartbeat(s.h, j.id, j.lease_token, s.lease) do
          {:ok, _} ->
            acc

          {:error, %Honker.Error{code: "queue.lease_lost"}} ->
            # Another worker holds it now: stop this attempt, settle nothing.
            Process.exit(pid, :kill)
            Map.delete(acc, pid)

          {:error, e} ->
            Logger.warning("honker runner #{s.queue}: heartbeat failed: #{inspect(e)}")
            acc
        end
      end)

    Process.send_after(self(), :heartbeat, s.heartbeat)
    {:noreply, claim(%{s | running: running})}
  end

  def handle_info({:EXIT, _pid, _reason}, s), do: {:noreply, s}

  defp start_job(job, s) do
    parent = self()
    mod = s.mod
    {pid, ref} = spawn_monitor(fn -> send(parent, {:honker_done, self(), perform(mod, job)}) end)
    if s.timeout, do: Process.send_after(self(), {:job_timeout, pid}, s.timeout)
    %{s | running: Map.put(s.running, pid, %{job: job, ref: ref})}
  end

  defp perform(mod, job) do
    mod.perform(job)
  rescue
    e -> {:error, Exception.format(:error, e, __STACKTRACE__)}
  catch
    kind, reason -> {:error, Exception.format(kind, reason, __STACKTRACE__)}
  end

  defp settle(s, job, result) do
    outcome =
      case result do
        :ok -> Honker.ack(s.h, job.id, job.lease_token)
        {:ok, _} -> Honker.ack(s.h, job.id, job.lease_token)
        {:cancel, why} -> Honker.fail(s.h, job.id, job.lease_token, text(why))
        {:discard, why} -> Honker.fail(s.h, job.id, job.lease_token, text(why))
        {:snooze, ms} when is_integer(ms) -> Honker.retry(s.h, job.id, job.lease_token, ms, "snoozed")
        {:error, why} -> Honker.retry(s.h, job.id, job.lease_token, backoff(s.mod, job), text(why))
        other -> Honker.retry(s.h, job.id, job.lease_token, backoff(s.mod, job), "unexpected return: #{inspect(other)}")
      end

    with {:error, e} <- outcome, do: Logger.warning("honker runner #{s.queue}: job #{job.id}: #{inspect(e)}")
  end

  defp backoff(mod, job) do
    if function_exported?(mod, :backoff, 1), do: mod.backoff(job), else: nil
  end

  defp text(s) when is_binary(s), do: s
  defp text(t), do: inspect(t)

  @impl true
  def terminate(_reason, s) do
    # 1. Stop claiming. With cancel keys the running wait ends at once and answers; otherwise
    #    the waiter's OS process is stopped. Jobs a claim returned meanwhile are released.
    if s.claiming do
      if s.h.cancellable do
        Honker.cancel_wait(s.h, s.claiming)
        port = s.waiter

        receive do
          {^port, {:data, frame}} -> release_claimed(s, Honker.Waiter.parse(frame))
        after
          5_000 -> :ok
        end
      end
    end

    Honker.Waiter.close(s.waiter)
    # 2. Let running jobs finish until the deadline, then kill them and release their jobs.
    deadline = System.monotonic_time(:millisecond) + s.shutdown
    left = drain(s, s.running, deadline)

    Enum.each(left, fn {pid, %{job: j}} ->
      Process.exit(pid, :kill)
      Honker.release(s.h, j.id, j.lease_token)
    end)

    Honker.close(s.h)
  end

  defp release_claimed(s, {:ok, text}) do
    text |> Honker.JSON.decode() |> Enum.each(fn m -> Honker.release(s.h, m["id"], m["lease_token"]) end)
  end

  defp release_claimed(_s, _), do: :ok

  defp drain(_s, running, _deadline) when map_size(running) == 0, do: running

  defp drain(s, running, deadline) do
    wait = max(deadline - System.monotonic_time(:millisecond), 0)

    receive do
      {:honker_done, pid, result} when is_map_key(running, pid) ->
        settle(s, running[pid].job, result)
        drain(s, Map.delete(running, pid), deadline)
    after
      wait -> running
    end
  end
end
