# frozen_string_literal: true

$LOAD_PATH.unshift File.expand_path("../lib", __dir__)
require "minitest/autorun"
require "tmpdir"
require "honker"

module HonkerTestHelpers
  def setup
    @dir = Dir.mktmpdir("honker-rb")
    @path = File.join(@dir, "app.db")
  end

  def teardown
    FileUtils.rm_rf(@dir)
  end

  def honker
    @honker ||= Honker.open(@path)
  end

  # Poll cond until it holds or a generous deadline passes.
  def eventually(what, timeout: 30)
    deadline = Time.now + timeout
    until yield
      flunk "timed out waiting for #{what}" if Time.now > deadline
      sleep 0.01
    end
  end

  def count(sql, *args)
    honker.db.get_first_value(sql, args)
  end

  def assert_integrity
    assert_equal "ok", honker.db.get_first_value("PRAGMA integrity_check")
  end
end
