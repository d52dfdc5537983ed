defmodule Honker.Listener do
  @moduledoc """
  A linked process delivering the notifications of one channel to a subscriber as
  `{:honker_notification, listener_pid, notification_map}`, in id order. Started by
  `Honker.listen/3`; it waits on a `Honker.Waiter` OS process of its own.
  """
  use GenServer

  @doc false
  def start_link(h, channel, subscriber, opts) do
    GenServer.start_link(__MODULE__, {h, channel, subscriber, opts})
  end

  @impl true
  def init({h, channel, subscriber, opts}) do
    Process.flag(:trap_exit, true)

    after_id =
      case Keyword.fetch(opts, :after) do
        {:ok, id} ->
          {:ok, id}

        :error ->
          # The channel's newest id, served by the (channel, id) index.
          Honker.value(h, "SELECT coalesce(max(id), 0) FROM honker_notifications WHERE channel = ?", [channel])
      end

    with {:ok, after_id} <- after_id,
         {:ok, w} <- Honker.waiter(h) do
      Process.monitor(subscriber)
      {:ok, wait(%{h: h, waiter: w, channel: channel, to: subscriber, after: after_id, key: nil})}
    else
      {:error, e} -> {:stop, e}
    end
  end

  defp wait(s) do
    key = Honker.next_key()

    Honker.Waiter.send_query(
      s.waiter,
      Honker.wait_sql(s.h, "honker_listen_wait", [s.channel, s.after, 100], 30_000, key)
    )

    %{s | key: key}
  end

  @impl true
  def handle_info({port, {:data, frame}}, %{waiter: port} = s) do
    case Honker.Waiter.parse(frame) do
      {:ok, text} ->
        notes = Honker.JSON.decode(text)
        Enum.each(notes, fn n -> send(s.to, {:honker_notification, self(), n}) end)
        last = List.last(notes)
        {:noreply, wait(%{s | after: if(last, do: last["id"], else: s.after), key: nil})}

      {:error, e} ->
        {:stop, e, s}
    end
  end

  def handle_info({port, {:exit_status, st}}, %{waiter: port} = s), do: {:stop, {:waiter_exited, st}, s}
  def handle_info({:DOWN, _, :process, pid, _}, %{to: pid} = s), do: {:stop, :normal, s}
  def handle_info({:EXIT, _, reason}, s), do: {:stop, reason, s}

  @impl true
  def terminate(_reason, s) do
    if s.key && s.h.cancellable do
      Honker.cancel_wait(s.h, s.key)
      port = s.waiter

      receive do
        {^port, {:data, _}} -> :ok
      after
        5_000 -> :ok
      end
    end

    Honker.Waiter.close(s.waiter)
  end
end
