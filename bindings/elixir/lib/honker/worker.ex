defmodule Honker.Worker do
  @moduledoc """
  A job handler for one queue, in the style of `Oban.Worker`:

      defmodule MyApp.Mailer do
        use Honker.Worker, queue: "emails", max_attempts: 5

        @impl Honker.Worker
        def perform(%Honker.Job{args: %{"to" => to}}) do
          deliver(to)          # :ok acks; {:error, _} or a raise retries; {:cancel, _} dead-letters
        end
      end

      MyApp.Mailer.enqueue(h, %{to: "ada@example.com"})   # inside your transaction if open

  Run it under your supervisor with `{Honker.Runner, worker: MyApp.Mailer, path: "app.db"}`.
  """

  @type result :: :ok | {:ok, term} | {:error, term} | {:cancel, term} | {:snooze, non_neg_integer}

  @doc "Work one job."
  @callback perform(Honker.Job.t()) :: result

  @doc "Milliseconds before the retry of a job whose perform failed (default: the queue's backoff)."
  @callback backoff(Honker.Job.t()) :: non_neg_integer

  @optional_callbacks backoff: 1

  defmacro __using__(opts) do
    queue = Keyword.fetch!(opts, :queue)
    defaults = Keyword.take(opts, [:max_attempts, :priority])

    quote do
      @behaviour Honker.Worker

      @doc "The queue this worker consumes."
      def queue, do: unquote(queue)

      @doc "Enqueue `args` for this worker (options as `Honker.enqueue/4`)."
      def enqueue(h, args, opts \\ []),
        do: Honker.enqueue(h, unquote(queue), args, Keyword.merge(unquote(defaults), opts))
    end
  end
end
