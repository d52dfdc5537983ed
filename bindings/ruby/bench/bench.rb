# frozen_string_literal: true

# The Ruby binding's overhead over the same SQL through the same driver (the sqlite3 gem with the
# extension loaded), and the cross-process wake latency. Not run in CI: ruby bench/bench.rb
$LOAD_PATH.unshift File.expand_path("../lib", __dir__)
require "honker"
require "json"
require "tmpdir"
require "rbconfig"

ROUNDS = 5
PER_RUN = 2000

def time_run
  t = Process.clock_gettime(Process::CLOCK_MONOTONIC)
  PER_RUN.times { |i| yield i }
  (Process.clock_gettime(Process::CLOCK_MONOTONIC) - t) * 1e6 / PER_RUN
end

def paired(binding, raw, before = nil)
  a = []
  b = []
  ROUNDS.times do
    before&.call
    a << time_run(&binding)
    b << time_run(&raw)
  end
  [a.sort[ROUNDS / 2], b.sort[ROUNDS / 2]]
end

dir = Dir.mktmpdir
path = File.join(dir, "bench.db")
if ARGV[0] == "notifier"
  h = Honker.open(ARGV[1])
  sleep 0.3
  300.times do
    sleep 0.003
    h.notify("wake", Process.clock_gettime(Process::CLOCK_REALTIME, :microsecond))
  end
  exit
end

h = Honker.open(path)
db = h.db
payload = { "order" => 1, "email" => "a@example.com" }
eb, er = paired(->(_) { h.enqueue("b", payload) },
                ->(_) { db.get_first_value("SELECT honker_enqueue(?, ?)", ["r", JSON.generate(payload)]) })
refill = lambda do
  %w[b r].each { |q| PER_RUN.times { db.get_first_value("SELECT honker_enqueue(?, '{\"order\":1}')", [q]) } }
end
cb, cr = paired(lambda { |_|
  j = h.claim("b", worker: "w").first
  h.ack(j.id, j.lease_token)
}, lambda { |_|
  j = JSON.parse(db.get_first_value("SELECT honker_claim(?, ?, ?, ?)", ["r", "w", 1, nil])).first
  db.get_first_value("SELECT honker_ack(?, ?)", [j["id"], j["lease_token"]])
}, refill)

l = h.listen("wake")
pid = Process.spawn(RbConfig.ruby, __FILE__, "notifier", path)
lat = Array.new(300) do
  n = l.next
  (Process.clock_gettime(Process::CLOCK_REALTIME, :microsecond) - n.payload) / 1000.0
end
Process.wait(pid)
lat.sort!
puts "| figure | binding (µs/op) | raw SQL (µs/op) | ratio |"
puts "|---|---|---|---|"
puts format("| enqueue 1/tx | %.1f | %.1f | %.2fx |", eb, er, eb / er)
puts format("| claim+ack | %.1f | %.1f | %.2fx |", cb, cr, cb / cr)
puts format("| cross-process wake p50 / p99 (ms) | %.3f / %.3f | | |", lat[lat.size / 2], lat[lat.size * 99 / 100])
FileUtils.rm_rf(dir)
