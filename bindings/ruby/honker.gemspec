# frozen_string_literal: true

require_relative "lib/honker/version"

Gem::Specification.new do |s|
  s.name = "honker"
  s.version = Honker::VERSION
  s.summary = "Durable queues, NOTIFY/LISTEN, streams and cron inside your SQLite file"
  s.description = "Ruby binding of the honker SQLite extension: jobs enqueued in your own " \
                  "transaction, a threaded worker, pub/sub, streams with offsets, cron, locks, " \
                  "rate limits, and an ActiveJob adapter."
  s.authors = ["honker contributors"]
  s.license = "MIT"
  s.homepage = "https://github.com/honker/honker/tree/main/bindings/ruby"
  s.files = Dir["lib/**/*.rb", "README.md"]
  s.require_paths = ["lib"]
  s.required_ruby_version = ">= 3.0"
  s.add_dependency "sqlite3", "~> 1.4"
  s.add_dependency "fiddle", "~> 1.0"
  s.add_development_dependency "minitest", "~> 5.0"
  s.add_development_dependency "activejob", "~> 6.1"
end
