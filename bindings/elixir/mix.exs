defmodule Mix.Tasks.Compile.HonkerWaiter do
  @moduledoc "Builds priv/honker_waiter, the port program for blocking waits, against libsqlite3."
  use Mix.Task.Compiler

  @impl true
  def run(_args) do
    src = "c_src/honker_waiter.c"
    out = "priv/honker_waiter"

    # Mix links the build's priv/ to ours before compilers run, and only if priv/ exists: on a
    # fresh checkout it does not yet, so create it and have Mix link it now.
    unless File.dir?("priv") do
      File.mkdir_p!("priv")
      Mix.Project.build_structure()
    end

    if Mix.Utils.stale?([src], [out]) do
      cc = System.get_env("CC", "cc")
      args = ["-O2", "-Wall", "-Wextra", "-o", out, src, "-lsqlite3"]

      case System.cmd(cc, args, stderr_to_stdout: true) do
        {_, 0} ->
          {:ok, []}

        {log, _} ->
          Mix.shell().error(log)
          {:error, []}
      end
    else
      {:noop, []}
    end
  end
end

defmodule Honker.MixProject do
  use Mix.Project

  def project do
    [
      app: :honker,
      version: "0.1.0",
      elixir: "~> 1.14",
      compilers: [:honker_waiter] ++ Mix.compilers(),
      start_permanent: Mix.env() == :prod,
      elixirc_options: [warnings_as_errors: true],
      deps: [],
      description: "Durable queues, NOTIFY/LISTEN, streams and cron inside your SQLite file",
      package: [licenses: ["MIT"], files: ~w(lib c_src mix.exs README.md)]
    ]
  end

  # erlang-p1-sqlite3 (the application :sqlite3) and erlang-jiffy come from the system's Erlang
  # lib directory (Debian packages), not from Hex.
  def application do
    [extra_applications: [:logger, :sqlite3, :jiffy]]
  end
end
