defmodule Honker.Error do
  @moduledoc """
  A honker error: `code` is the stable code shared by every language binding
  (`"queue.lease_lost"`, `"payload.not_json"`, ...). Functions return `{:error, %Honker.Error{}}`;
  the `!` variants raise it.

  SQLite errors without a honker code (busy included) are not wrapped: they come back as the
  driver's own `{:error, {:sqlite3, code, message}}`.
  """
  defexception [:code, :message]

  @type t :: %__MODULE__{code: String.t(), message: String.t()}

  @doc false
  def new(code, message), do: %__MODULE__{code: code, message: message}

  @impl true
  def message(%__MODULE__{code: c, message: m}), do: "#{c}: #{m}"

  @doc false
  # A driver error message as {:error, reason}: a Honker.Error when it reads
  # "honker: <code>: <message>", else the driver's tuple.
  def from_driver(sqlite_code, msg) do
    msg = IO.iodata_to_binary(msg)

    case Regex.run(~r/honker: ([a-z0-9_]+\.[a-z0-9_]+): (.*)\z/s, msg) do
      [_, code, text] -> {:error, new(code, text)}
      nil -> {:error, {:sqlite3, sqlite_code, msg}}
    end
  end
end
