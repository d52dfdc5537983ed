# The Elixir binding's overhead over the same SQL through the same driver (erlang-p1-sqlite3 with
# the extension loaded), and the cross-process wake latency. Not run in CI:
#   mix run bench/bench.exs
rounds = 5
per_run = 1000
dir = Path.join(System.tmp_dir!(), "honker-ex-bench-#{System.unique_integer([:positive])}")
File.mkdir_p!(dir)
path = Path.join(dir, "bench.db")
{:ok, h} = Honker.open(path)
db = h.db

time_run = fn f ->
  t = System.monotonic_time(:microsecond)
  Enum.each(1..per_run, f)
  (System.monotonic_time(:microsecond) - t) / per_run
end

paired = fn a, b, before ->
  {as, bs} =
    Enum.reduce(1..rounds, {[], []}, fn _, {as, bs} ->
      before.()
      {[time_run.(a) | as], [time_run.(b) | bs]}
    end)

  med = fn l -> Enum.at(Enum.sort(l), div(rounds, 2)) end
  {med.(as), med.(bs)}
end

payload = %{"order" => 1, "email" => "a@example.com"}

{eb, er} =
  paired.(
    fn _ -> {:ok, _} = Honker.enqueue(h, "b", payload) end,
    fn _ ->
      [columns: _, rows: [{_id}]] = :sqlite3.sql_exec(db, "SELECT honker_enqueue(?, ?)", ["r", :jiffy.encode(payload)])
    end,
    fn -> :ok end
  )

refill = fn ->
  for q <- ["b", "r"], _ <- 1..per_run, do: :sqlite3.sql_exec(db, "SELECT honker_enqueue(?, '{\"order\":1}')", [q])
end

{cb, cr} =
  paired.(
    fn _ ->
      {:ok, [j]} = Honker.claim(h, "b", "w")
      {:ok, true} = Honker.ack(h, j.id, j.lease_token)
    end,
    fn _ ->
      [columns: _, rows: [{text}]] = :sqlite3.sql_exec(db, "SELECT honker_claim(?, ?, ?, ?)", ["r", "w", 1, :null])
      [j] = :jiffy.decode(text, [:return_maps])
      [columns: _, rows: [{1}]] = :sqlite3.sql_exec(db, "SELECT honker_ack(?, ?)", [j["id"], j["lease_token"]])
    end,
    refill
  )

# Cross-process wake: a notifier OS process (another BEAM) to a listener here.
{:ok, _l} = Honker.listen(h, "wake")
ebin = :code.lib_dir(:honker, :ebin) |> to_string()

code = """
{:ok, h} = Honker.open(#{inspect(path)})
Process.sleep(500)
for _ <- 1..300 do
  Process.sleep(3)
  Honker.notify(h, "wake", System.system_time(:microsecond))
end
"""

port = Port.open({:spawn_executable, System.find_executable("elixir")}, [:exit_status, args: ["-pa", ebin, "-e", code]])

lat =
  for _ <- 1..300 do
    receive do
      {:honker_notification, _, %{"payload" => sent}} -> (System.system_time(:microsecond) - sent) / 1000
    end
  end
  |> Enum.sort()

receive do
  {^port, {:exit_status, _}} -> :ok
end

IO.puts("| figure | binding (µs/op) | raw SQL (µs/op) | ratio |")
IO.puts("|---|---|---|---|")
IO.puts(:io_lib.format("| enqueue 1/tx | ~.1f | ~.1f | ~.2fx |", [eb, er, eb / er]))
IO.puts(:io_lib.format("| claim+ack | ~.1f | ~.1f | ~.2fx |", [cb, cr, cb / cr]))

IO.puts(
  :io_lib.format("| cross-process wake p50 / p99 (ms) | ~.3f / ~.3f | | |", [Enum.at(lat, 150), Enum.at(lat, 297)])
)

File.rm_rf!(dir)
