ExUnit.start(capture_log: true)

defmodule Honker.TestHelpers do
  import ExUnit.Assertions

  def tmp_db(context) do
    dir = Path.join(System.tmp_dir!(), "honker-ex-#{System.unique_integer([:positive])}")
    File.mkdir_p!(dir)
    ExUnit.Callbacks.on_exit(fn -> File.rm_rf!(dir) end)
    path = Path.join(dir, "app.db")
    {:ok, h} = Honker.open(path)
    ExUnit.Callbacks.on_exit(fn -> Honker.close(h) end)
    Map.merge(context, %{path: path, h: h})
  end

  # Poll until fun returns truthy or a generous deadline passes.
  def eventually(what, fun, deadline_ms \\ 30_000) do
    deadline = System.monotonic_time(:millisecond) + deadline_ms
    do_eventually(what, fun, deadline)
  end

  defp do_eventually(what, fun, deadline) do
    if fun.() do
      :ok
    else
      if System.monotonic_time(:millisecond) > deadline, do: flunk("timed out waiting for #{what}")
      Process.sleep(10)
      do_eventually(what, fun, deadline)
    end
  end

  def one(h, sql, params \\ []) do
    {:ok, [[v]]} = Honker.query(h, sql, params)
    v
  end
end
