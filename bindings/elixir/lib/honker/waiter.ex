defmodule Honker.Waiter do
  @moduledoc """
  A dedicated connection for honker's blocking SQL functions, in an OS process of its own
  (`priv/honker_waiter`, a small C port program against the system libsqlite3).

  erlang-p1-sqlite3 runs every connection's statements one after another, so a wait of seconds
  through it would hold up every other connection of the VM. A waiter blocks nothing but
  itself; its owner gets the answer as a message and keeps serving its mailbox meanwhile.
  """

  @doc "Start a waiter on the database at path with the extension loaded."
  def open(path, ext) do
    exe = Application.app_dir(:honker, "priv/honker_waiter")
    port = Port.open({:spawn_executable, exe}, [:binary, {:packet, 4}, :exit_status])
    Port.command(port, ["O", path, 0, ext])

    receive do
      {^port, {:data, "O"}} ->
        {:ok, port}

      {^port, {:data, "E" <> err}} ->
        close(port)
        [_, msg] = String.split(err, "\t", parts: 2)

        case Honker.Error.from_driver(1, msg) do
          {:error, %Honker.Error{}} = coded -> coded
          _ -> {:error, Honker.Error.new("ext.load", "cannot load the honker extension from #{inspect(ext)}: #{msg}")}
        end

      {^port, {:exit_status, s}} ->
        {:error, Honker.Error.new("ext.load", "honker_waiter exited with #{s}")}
    end
  end

  @doc "Send one SELECT; the answer arrives as {port, {:data, frame}} (see parse/1)."
  def send_query(port, sql), do: Port.command(port, ["Q", sql])

  @doc "Run one SELECT and wait for its answer."
  def query(port, sql) do
    send_query(port, sql)

    receive do
      {^port, {:data, frame}} -> parse(frame)
      {^port, {:exit_status, s}} -> {:error, Honker.Error.new("binding.closed", "waiter exited with #{s}")}
    end
  end

  @doc "An answer frame as {:ok, text | nil} or {:error, reason}."
  def parse("R" <> text), do: {:ok, text}
  def parse("N"), do: {:ok, nil}

  def parse("E" <> err) do
    [code, msg] = String.split(err, "\t", parts: 2)
    Honker.Error.from_driver(String.to_integer(code), msg)
  end

  @doc "Stop the waiter's OS process now (it only reads, so a kill mid-wait loses nothing)."
  def close(port) do
    case Port.info(port, :os_pid) do
      {:os_pid, pid} ->
        Port.close(port)
        System.cmd("kill", ["-TERM", Integer.to_string(pid)], stderr_to_stdout: true)

      nil ->
        :ok
    end

    receive do
      {^port, {:exit_status, _}} -> :ok
    after
      0 -> :ok
    end

    :ok
  catch
    :error, :badarg -> :ok
  end

  @doc false
  # SQL text "SELECT fun(args...)" with the arguments as literals.
  def call_sql(fun, args) do
    ["SELECT ", fun, "(", Enum.map_intersperse(args, ", ", &literal/1), ")"] |> IO.iodata_to_binary()
  end

  defp literal(nil), do: "NULL"
  defp literal(i) when is_integer(i), do: Integer.to_string(i)

  defp literal(s) when is_binary(s) do
    if String.contains?(s, <<0>>), do: raise(ArgumentError, "NUL byte in an argument")
    ["'", String.replace(s, "'", "''"), "'"]
  end
end
