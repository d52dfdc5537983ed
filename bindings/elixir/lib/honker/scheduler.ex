defmodule Honker.Scheduler do
  @moduledoc """
  A supervised process firing cron schedules: it ticks, then sleeps until the next fire or any
  commit (a new or changed schedule). Any number of schedulers, in any processes and languages,
  fire each boundary once.

      children = [{Honker.Scheduler, path: "app.db"}]

  Options: `:path` (required), `:notify` (a pid sent `{:honker_fired, fire}` per fire), `:name`.
  """
  use GenServer
  require Logger

  def start_link(opts), do: GenServer.start_link(__MODULE__, opts, Keyword.take(opts, [:name]))

  @impl true
  def init(opts) do
    Process.flag(:trap_exit, true)

    with {:ok, h} <- Honker.open(Keyword.fetch!(opts, :path)),
         {:ok, w} <- Honker.waiter(h) do
      send(self(), :tick)
      {:ok, %{h: h, waiter: w, notify: opts[:notify], key: nil}}
    else
      {:error, e} -> {:stop, e}
    end
  end

  @impl true
  def handle_info(:tick, s) do
    # Sample the epoch before looking, so a schedule committed meanwhile ends the wait.
    {:ok, epoch} = Honker.epoch(s.h)

    wait_ms =
      with {:ok, fires} <- Honker.tick(s.h),
           :ok <- Enum.each(fires, fn f -> s.notify && send(s.notify, {:honker_fired, f}) end),
           {:ok, list} <- Honker.schedules(s.h) do
        now = System.system_time(:millisecond)

        list
        |> Enum.reject(& &1["paused"])
        |> Enum.map(& &1["next_fire_ms"])
        |> Enum.reject(&is_nil/1)
        |> Enum.min(fn -> now + 3_600_000 end)
        |> Kernel.-(now)
        |> max(1)
        |> min(3_600_000)
      else
        {:error, e} ->
          Logger.warning("honker scheduler: #{inspect(e)}")
          1_000
      end

    key = Honker.next_key()
    Honker.Waiter.send_query(s.waiter, Honker.wait_sql(s.h, "honker_wait", [epoch], wait_ms, key))
    {:noreply, %{s | key: key}}
  end

  def handle_info({port, {:data, _frame}}, %{waiter: port} = s) do
    send(self(), :tick)
    {:noreply, %{s | key: nil}}
  end

  def handle_info({port, {:exit_status, st}}, %{waiter: port} = s), do: {:stop, {:waiter_exited, st}, s}
  def handle_info({:EXIT, _, reason}, s), do: {:stop, reason, s}

  @impl true
  def terminate(_reason, s) do
    if s.key, do: Honker.cancel_wait(s.h, s.key)
    Honker.Waiter.close(s.waiter)
    Honker.close(s.h)
  end
end
