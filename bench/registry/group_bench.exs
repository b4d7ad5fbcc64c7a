# The cases of registry_bench_test.go, on phoenixframework/group 0.2.1 (the
# Elixir original of package registry). Run by that benchmark; by hand:
#
#   elixir --name c@127.0.0.1 --cookie macula-bench -pa EBIN group_bench.exs local DUR_MS WORKERS
#   elixir --name r1@127.0.0.1 --cookie macula-bench -pa EBIN group_bench.exs replica
#   elixir --name c@127.0.0.1 --cookie macula-bench -pa EBIN group_bench.exs replicate N r1@127.0.0.1 r2@127.0.0.1
#
# It prints one line per case: "case <name> <value> <unit> <CPU µs per op>";
# the benchmark starts it with --erl "+sbwt none +sbwtdcpu none +sbwtdio none".

defmodule MaculaGroupBench do
  @name :bench

  def start_group do
    {:ok, _} = Application.ensure_all_started(:logger)
    {:ok, pid} = Group.start_link(name: @name, shards: System.schedulers_online(), log: false)
    Process.unlink(pid)
    :ok
  end

  # cpu: CPU microseconds per operation (all the VM's threads; run with
  # +sbwt none so that spinning schedulers do not count).
  def out(name, {value, cpu}, unit) do
    IO.puts("case #{name} #{:erlang.float_to_binary(value / 1, decimals: 1)} #{unit} #{:erlang.float_to_binary(cpu / 1, decimals: 3)}")
  end

  def cpu_ms, do: elem(:erlang.statistics(:runtime), 0)

  # Spawns n processes that each run fun.(i) and then stay alive (their
  # entries live as long as they do).
  def hold(n, fun) do
    parent = self()

    # In batches of 1,000, so that the shards' queues stay short.
    for batch <- Enum.chunk_every(1..n, 1_000) do
      for i <- batch do
        spawn(fn ->
          fun.(i)
          send(parent, :held)
          Process.sleep(:infinity)
        end)
      end

      for _ <- batch do
        receive do
          :held -> :ok
        after
          600_000 -> raise "a holder did not register"
        end
      end
    end

    :ok
  end

  # Runs workers processes for dur_ms, each calling op.(state) in a loop;
  # returns the number of calls per second.
  def parallel(workers, dur_ms, init, op) do
    parent = self()
    c0 = cpu_ms()
    t0 = System.monotonic_time(:microsecond)
    deadline = div(t0, 1000) + dur_ms

    for w <- 1..workers do
      spawn_link(fn -> send(parent, {:count, loop(init.(w), op, deadline, 0)}) end)
    end

    total = Enum.reduce(1..workers, 0, fn _, acc -> receive do: ({:count, c} -> acc + c) end)
    {total * 1_000_000 / (System.monotonic_time(:microsecond) - t0), (cpu_ms() - c0) * 1000 / total}
  end

  defp loop(state, op, deadline, n) do
    # Check the clock every 64 calls, as the Go side checks a flag.
    if rem(n, 64) == 0 and System.monotonic_time(:millisecond) >= deadline do
      n
    else
      loop(op.(state), op, deadline, n + 1)
    end
  end

  def local(dur_ms, workers, n \\ 100_000) do
    start_group()
    # The keys in a persistent term: a closure that captured them would copy
    # them into every process it is sent to.
    :persistent_term.put(:bench_keys, List.to_tuple(for i <- 0..(n - 1), do: "user/#{i}"))
    # 100,000 names, each held by its own process (a process holds a name).
    hold(n, fn i -> :ok = Group.register(@name, "user/#{i - 1}", %{v: 1}, timeout: 600_000) end)

    lookup = fn i ->
      {_, _} = Group.lookup(@name, elem(:persistent_term.get(:bench_keys), i))
      if i + 1 == n, do: 0, else: i + 1
    end

    out("lookup-100k", parallel(workers, dur_ms, fn w -> rem(w * 7919, n) end, lookup), "lookups/s")
    out("lookup-hot", parallel(workers, dur_ms, fn _ -> 0 end, fn _ -> {_, _} = Group.lookup(@name, "user/0"); 0 end), "lookups/s")

    # New names from one process, one after the other.
    reg = fn i ->
      :ok = Group.register(@name, "one/#{i}", %{v: 1})
      i + 1
    end

    out("register-1", parallel(1, dur_ms, fn _ -> 0 end, reg), "writes/s")

    # New names from `workers` processes at once.
    regp = fn {w, i} ->
      :ok = Group.register(@name, "w#{w}/#{i}", %{v: 1})
      {w, i + 1}
    end

    out("register-parallel", parallel(workers, dur_ms, fn w -> {w, 0} end, regp), "writes/s")

    joinleave = fn s ->
      :ok = Group.join(@name, "room/1", %{})
      :ok = Group.leave(@name, "room/1")
      s
    end

    {rate, cpu} = parallel(1, dur_ms, fn _ -> nil end, joinleave)
    out("join+leave", {2 * rate, cpu / 2}, "writes/s")

    # A 10,000-member group: 10,000 processes join one key.
    m = 10_000
    hold(m, fn _ -> :ok = Group.join(@name, "big/group", %{role: "m"}, timeout: 600_000) end)

    members = fn s ->
      ^m = length(Group.members(@name, "big/group"))
      s
    end

    out("members-10k", parallel(1, dur_ms, fn _ -> nil end, members), "reads/s")
  end

  def replica do
    start_group()
    Process.sleep(:infinity)
  end

  def replicate(n, replicas) do
    start_group()

    for r <- replicas do
      wait(60_000, fn -> Node.connect(r) == true end)
    end

    # Every node sees the two others.
    wait(60_000, fn ->
      Enum.all?([node() | replicas], fn nd -> length(:erpc.call(nd, Group, :nodes, [@name])) == 2 end)
    end)

    keys = for i <- 0..(n - 1), do: "it/#{i}"
    parent = self()
    nodes = [node() | replicas]
    cpu = fn -> Enum.sum(Enum.map(nodes, fn nd -> elem(:erpc.call(nd, :erlang, :statistics, [:runtime]), 0) end)) end
    c0 = cpu.()
    t0 = System.monotonic_time(:microsecond)

    # One process writes them all (a process may hold many names).
    spawn(fn ->
      for k <- keys, do: :ok = Group.register(@name, k, %{v: 1})
      send(parent, {:written, System.monotonic_time(:microsecond)})
      Process.sleep(:infinity)
    end)

    t1 = receive do: ({:written, t} -> t)

    wait(600_000, fn ->
      Enum.all?(replicas, fn r -> :erpc.call(r, Group, :registry_count, [@name]) >= n end)
    end)

    t2 = System.monotonic_time(:microsecond)
    c1 = cpu.()
    out("replicate-written", {(t1 - t0) / 1000, 0}, "ms")
    out("replicate-visible", {(t2 - t0) / 1000, (c1 - c0) * 1000 / n}, "ms")
  end

  defp wait(ms, f) do
    deadline = System.monotonic_time(:millisecond) + ms
    wait_until(deadline, f)
  end

  defp wait_until(deadline, f) do
    cond do
      f.() ->
        :ok

      System.monotonic_time(:millisecond) > deadline ->
        raise "timed out"

      true ->
        Process.sleep(5)
        wait_until(deadline, f)
    end
  end
end

case System.argv() do
  ["local", dur, workers] ->
    MaculaGroupBench.local(String.to_integer(dur), String.to_integer(workers))

  ["local", dur, workers, n] ->
    MaculaGroupBench.local(String.to_integer(dur), String.to_integer(workers), String.to_integer(n))

  ["replica"] ->
    MaculaGroupBench.replica()

  ["replicate", n | replicas] ->
    MaculaGroupBench.replicate(String.to_integer(n), Enum.map(replicas, &String.to_atom/1))
end
