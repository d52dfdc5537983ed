# Plays one interop actor (see interop/README.md) through the Elixir binding (bindings/elixir,
# compiled by this participant's build step; the runner puts its ebin on the code path).
#
# stdin and stdout are a raw port on fds 0/1 rather than the group leader's :stdio, so lines of
# any size pass byte for byte whatever the locale, and every answer is written out at once.
defmodule Honker.Interop.Driver do
  # SQL function per op, its arguments (trailing "?" = optional), and whether its TEXT answer is
  # JSON to splice verbatim.
  @ops %{
    "queue_configure" => {"honker_queue_configure", ~w(queue options), true},
    "claim" => {"honker_claim", ~w(queue worker n lease_ms?), true},
    "ack" => {"honker_ack", ~w(job_id lease_token), false},
    "retry" => {"honker_retry", ~w(job_id lease_token delay_ms? error?), true},
    "fail" => {"honker_fail", ~w(job_id lease_token error), false},
    "job" => {"honker_job", ~w(job_id), true},
    "dead_requeue" => {"honker_dead_requeue", ~w(job_id), false},
    "result_save" => {"honker_result_save", ~w(job_id value ttl_ms?), false},
    "result_get" => {"honker_result_get", ~w(job_id), true},
    "listen" => {"honker_listen", ~w(channel after_id limit), true},
    "read" => {"honker_read", ~w(topic after_offset limit), true},
    "commit_offset" => {"honker_commit_offset", ~w(consumer topic offset), false},
    "offset" => {"honker_offset", ~w(consumer topic), false},
    "schedule" => {"honker_schedule", ~w(name cron queue payload options?), false},
    "cron_next" => {"honker_cron_next", ~w(cron after_ms tz?), false},
    "cron_tick" => {"honker_cron_tick", ~w(now_ms), true}
  }

  def main([path]) do
    {:ok, _} = Application.ensure_all_started(:honker)
    io = Port.open({:fd, 0, 1}, [:binary, :eof, {:line, 65_536}])
    loop(io, %{path: path, h: nil, waiter: nil}, [])
  end

  defp loop(io, st, acc) do
    receive do
      {^io, {:data, {:noeol, part}}} ->
        loop(io, st, [acc | part])

      {^io, {:data, {:eol, part}}} ->
        line = IO.iodata_to_binary([acc | part])
        st = if line == "", do: st, else: serve(io, st, line)
        loop(io, st, [])

      {^io, :eof} ->
        close(st)
        System.halt(0)
    end
  end

  defp serve(io, st, line) do
    {id, answer, st} =
      case decode(line) do
        {:ok, %{"op" => op} = req} ->
          args = Map.get(req, "args") || %{}

          try do
            {st, result} = handle(st, op, args)
            {req["id"], result, st}
          rescue
            e -> {req["id"], {:error, "driver.failed", Exception.message(e)}, st}
          end

        _ ->
          {nil, {:error, "driver.bad_args", "not a request: #{String.slice(line, 0, 200)}"}, st}
      end

    Port.command(io, [response(id, answer), ?\n])
    st
  end

  defp decode(line) do
    {:ok, :jiffy.decode(line, [:return_maps, {:null_term, nil}])}
  catch
    _, _ -> :error
  end

  defp response(id, {:ok, value}), do: [~s({"id":), enc(id), ~s(,"ok":true,"value":), value, "}"]

  defp response(id, {:error, code, msg}) do
    enc(%{"id" => id, "ok" => false, "error" => %{"code" => code, "message" => to_string(msg)}})
  end

  # --- ops -----------------------------------------------------------------------------------

  defp handle(st, "close", _), do: {close(st), {:ok, "null"}}

  defp handle(%{h: nil} = st, op, args) do
    case Honker.open(st.path) do
      {:ok, h} -> handle(%{st | h: h}, op, args)
      e -> {st, failure(e)}
    end
  end

  defp handle(st, op, args) do
    h = st.h

    case op do
      "open" -> {st, {:ok, "null"}}
      "begin" -> {st, done(Honker.query(h, "BEGIN IMMEDIATE"))}
      "commit" -> {st, done(Honker.query(h, "COMMIT"))}
      "rollback" -> {st, done(Honker.query(h, "ROLLBACK"))}
      "sql" -> {st, sql(h, args["sql"])}
      "enqueue" -> {st, enqueue(h, args)}
      "notify" -> {st, scalar(Honker.value(h, "SELECT honker_notify(?, ?)", [args["channel"], args["payload"]]))}
      "publish" -> {st, publish(h, args)}
      "listen_wait" -> listen_wait(st, args)
      _ -> {st, call(h, op, args)}
    end
  end

  # Payloads are JSON text and go to honker unchanged (the binding's value-taking API would
  # re-encode them); the binding's typed errors and SQL plumbing do the rest.
  defp enqueue(h, %{"queue" => q, "payload" => p} = args) do
    case args["options"] do
      nil -> scalar(Honker.value(h, "SELECT honker_enqueue(?, ?)", [q, p]))
      o -> scalar(Honker.value(h, "SELECT honker_enqueue(?, ?, ?)", [q, p, enc(o)]))
    end
  end

  defp publish(h, %{"topic" => t, "payload" => p} = args) do
    case args["key"] do
      nil -> scalar(Honker.value(h, "SELECT honker_publish(?, ?)", [t, p]))
      k -> scalar(Honker.value(h, "SELECT honker_publish(?, ?, ?)", [t, p, k]))
    end
  end

  # A blocking wait runs on the binding's waiter OS process (opened at the first wait), the way
  # Honker.Listener and read_wait do, with the extension's cancel keys when it has them.
  defp listen_wait(st, args) do
    st =
      if st.waiter do
        st
      else
        {:ok, w} = Honker.waiter(st.h)
        %{st | waiter: w}
      end

    fn_args = [args["channel"], args["after_id"], args["limit"]]
    {st, json(Honker.wait_call(st.h, st.waiter, "honker_listen_wait", fn_args, args["timeout_ms"]))}
  end

  defp call(h, op, args) do
    case Map.fetch(@ops, op) do
      {:ok, {fun, names, json?}} ->
        vals = Enum.map(names, fn n -> bind(args[String.trim_trailing(n, "?")]) end)
        vals = drop_optional(Enum.reverse(vals), Enum.reverse(names)) |> Enum.reverse()
        sql = "SELECT #{fun}(#{Enum.map_join(vals, ", ", fn _ -> "?" end)})"
        res = Honker.value(h, sql, vals)
        if json?, do: json(res), else: scalar(res)

      :error ->
        {:error, "driver.unsupported_op", op}
    end
  end

  defp drop_optional([nil | vs], [n | ns]) when vs != [] do
    if String.ends_with?(n, "?"), do: drop_optional(vs, ns), else: [nil | vs]
  end

  defp drop_optional(vs, _), do: vs

  defp bind(v) when is_map(v) or is_list(v), do: enc(v)
  defp bind(true), do: 1
  defp bind(false), do: 0
  defp bind(v), do: v

  defp sql(h, text) do
    case :sqlite3.sql_exec(h.db, text, []) do
      [columns: cols, rows: rows] ->
        {:ok, enc(Enum.map(rows, fn r -> row_map(cols, r) end))}

      [{:columns, _}, {:rows, _}, {:error, code, msg}] ->
        failure(Honker.Error.from_driver(code, msg))

      {:error, code, msg} ->
        failure(Honker.Error.from_driver(code, msg))

      _ ->
        {:ok, "[]"}
    end
  end

  defp row_map(cols, row) do
    Enum.zip(cols, Tuple.to_list(row))
    |> Map.new(fn {c, v} -> {to_string(c), v} end)
  end

  # --- values and errors -----------------------------------------------------------------------

  defp enc(term), do: :jiffy.encode(term, [:use_nil])

  defp done({:ok, _}), do: {:ok, "null"}
  defp done(e), do: failure(e)

  defp scalar({:ok, nil}), do: {:ok, "null"}
  defp scalar({:ok, v}) when is_binary(v), do: {:ok, enc(v)}
  defp scalar({:ok, v}), do: {:ok, enc(v)}
  defp scalar(e), do: failure(e)

  # honker's JSON answers spliced verbatim, never re-serialized.
  defp json({:ok, nil}), do: {:ok, "null"}
  defp json({:ok, text}) when is_binary(text), do: {:ok, text}
  defp json({:ok, v}), do: {:ok, enc(v)}
  defp json(e), do: failure(e)

  defp failure({:error, %Honker.Error{code: c, message: m}}), do: {:error, c, m}
  defp failure({:error, {:sqlite3, code, msg}}) when code in [5, 6], do: {:error, "sqlite.busy", msg}

  defp failure({:error, {:sqlite3, code, msg}}) when is_integer(code) and rem(code, 256) in [5, 6],
    do: {:error, "sqlite.busy", msg}

  defp failure({:error, {:sqlite3, _, msg}}), do: {:error, "sqlite.error", msg}
  defp failure({:error, other}), do: {:error, "driver.failed", inspect(other)}
  defp failure(other), do: {:error, "driver.failed", inspect(other)}

  defp close(%{h: nil} = st), do: st

  defp close(st) do
    if st.waiter, do: Honker.Waiter.close(st.waiter)
    Honker.close(st.h)
    %{st | h: nil, waiter: nil}
  end
end

Honker.Interop.Driver.main(System.argv())
