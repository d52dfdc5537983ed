defmodule Honker.Job do
  @moduledoc "A claimed job; `args` is its decoded payload."
  defstruct [:id, :queue, :args, :attempts, :max_attempts, :lease_token, :lease_expires_ms, :priority]

  @type t :: %__MODULE__{}

  @doc false
  def from_map(m) do
    %__MODULE__{
      id: m["id"],
      queue: m["queue"],
      args: m["payload"],
      attempts: m["attempts"],
      max_attempts: m["max_attempts"],
      lease_token: m["lease_token"],
      lease_expires_ms: m["lease_expires_ms"],
      priority: m["priority"]
    }
  end
end
