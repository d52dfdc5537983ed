defmodule Honker.JSON do
  @moduledoc false
  # Payload encoding over jiffy, refusing what another language could not read back exactly.

  @max_safe 9_007_199_254_740_992

  # JSON text for a term, or {:error, payload.not_json} before anything is written.
  def encode(term) do
    {:ok, :jiffy.encode(prepare(term))}
  catch
    {:not_json, why} -> {:error, Honker.Error.new("payload.not_json", why)}
    :error, reason -> {:error, Honker.Error.new("payload.not_json", "cannot encode: #{inspect(reason)}")}
  end

  def decode(nil), do: nil
  def decode(text), do: :jiffy.decode(text, [:return_maps, {:null_term, nil}])

  defp prepare(nil), do: :null
  defp prepare(b) when is_boolean(b), do: b

  defp prepare(i) when is_integer(i) and abs(i) > @max_safe,
    do: throw({:not_json, "integer #{i} is beyond 2^53, which not every reader can hold exactly"})

  defp prepare(n) when is_number(n), do: n

  defp prepare(s) when is_binary(s) do
    if String.valid?(s), do: s, else: throw({:not_json, "a string is not valid UTF-8"})
  end

  defp prepare(a) when is_atom(a), do: Atom.to_string(a)
  defp prepare(l) when is_list(l), do: Enum.map(l, &prepare/1)
  defp prepare(%_{} = s), do: throw({:not_json, "#{inspect(s.__struct__)} is not a JSON value"})
  defp prepare(m) when is_map(m), do: Map.new(m, fn {k, v} -> {key(k), prepare(v)} end)
  defp prepare(other), do: throw({:not_json, "#{inspect(other)} is not a JSON value"})

  defp key(k) when is_binary(k), do: k
  defp key(k) when is_atom(k), do: Atom.to_string(k)
  defp key(k), do: throw({:not_json, "map key #{inspect(k)} is not a string"})
end
