using System.Runtime.ExceptionServices;

namespace AnomalyVae.Training.Engine;

/// <summary>Work split into numbered parts; a part may run on any thread of the team.</summary>
internal interface IPartitionedWork
{
    /// <param name="part">Which part (0 .. parts−1): decides what is computed and where its result goes.</param>
    /// <param name="worker">Which thread (0 .. Count−1) runs it: selects that thread's scratch space.</param>
    void Execute(int part, int worker);
}

/// <summary>
/// A fixed team of threads that runs the parts of an <see cref="IPartitionedWork"/>; the caller is worker 0 and
/// takes parts too. Threads claim parts one at a time, so when a worker is slow to wake or is preempted (a busy
/// machine) the others simply take more parts instead of waiting for it. What each part computes and where it writes
/// never depends on which thread ran it, so results stay bit-identical. Unlike Parallel.For nothing is allocated
/// per call. Idle workers spin briefly (training calls come microseconds apart), yielding, then sleep.
/// </summary>
internal sealed class WorkerTeam : IDisposable
{
    private const int SpinIterations = 200;

    private readonly Thread[] _threads;
    private readonly object _gate = new();
    private IPartitionedWork? _work;
    private int _parts;

    // High 32 bits: generation (two per Run: a closed one whose next part is int.MaxValue, then the open one);
    // low 32 bits: next unclaimed part. Claiming is a CAS on both, so a thread still finishing one call can never
    // claim a part of the next with the previous call's work item or part count.
    private long _state;
    private int _done;
    private int _sleeping;
    private volatile bool _disposed;
    private Exception? _failure;

    public WorkerTeam(int count)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(count, 1);
        Count = count;
        _threads = new Thread[count - 1];
        for (int i = 0; i < _threads.Length; i++)
        {
            int worker = i + 1;
            _threads[i] = new Thread(() => WorkerLoop(worker))
            {
                IsBackground = true,
                Name = $"AnomalyVae engine worker {worker}",
            };
            _threads[i].Start();
        }
    }

    /// <summary>Number of threads, including the caller.</summary>
    public int Count { get; }

    /// <summary>Runs parts 0..<paramref name="parts"/>−1 and returns when all are done; rethrows the first failure.</summary>
    public void Run(IPartitionedWork work, int parts)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (parts <= 0)
            return;
        if (Count == 1)
        {
            for (int p = 0; p < parts; p++)
                work.Execute(p, 0);
            return;
        }

        // Close the previous generation before publishing this run's work item and part count: a worker still
        // leaving the previous run reads _work and _parts after _state, and without the close it could pair the old
        // generation with the new part count and claim a part of this run with a CAS that still succeeds. That part
        // then ran twice and its stale completion let Run return before a part had finished (a gradient read while
        // it was being written: the trainer's rare timing-dependent model files).
        long closed = (Volatile.Read(ref _state) >> 32) + 1;
        Interlocked.Exchange(ref _state, (closed << 32) | int.MaxValue);
        _work = work;
        _parts = parts;
        _failure = null;
        Volatile.Write(ref _done, 0);
        long generation = closed + 1;
        Interlocked.Exchange(ref _state, generation << 32); // full fence before reading _sleeping
        if (Volatile.Read(ref _sleeping) > 0)
        {
            lock (_gate)
                Monitor.PulseAll(_gate);
        }

        RunParts(generation, 0);
        var spinner = default(SpinWait);
        while (Volatile.Read(ref _done) < parts)
            spinner.SpinOnce(sleep1Threshold: -1);
        _work = null;
        if (_failure is { } failure)
            ExceptionDispatchInfo.Capture(failure).Throw();
    }

    /// <summary>Claims and runs parts of <paramref name="generation"/> until none are left.</summary>
    private void RunParts(long generation, int worker)
    {
        while (true)
        {
            long state = Volatile.Read(ref _state);
            if (state >> 32 != generation)
                return;
            int part = (int)state;
            var work = _work;
            int parts = _parts;
            if (part >= parts || work is null)
                return;
            if (Interlocked.CompareExchange(ref _state, state + 1, state) != state)
                continue;
            try
            {
                work.Execute(part, worker);
            }
            catch (Exception ex)
            {
                Interlocked.CompareExchange(ref _failure, ex, null);
            }
            finally
            {
                Interlocked.Increment(ref _done);
            }
        }
    }

    private void WorkerLoop(int worker)
    {
        long seen = 0;
        while (true)
        {
            var spinner = default(SpinWait);
            for (int i = 0; i < SpinIterations && Volatile.Read(ref _state) >> 32 == seen && !_disposed; i++)
                spinner.SpinOnce(sleep1Threshold: -1);

            if (Volatile.Read(ref _state) >> 32 == seen && !_disposed)
            {
                lock (_gate)
                {
                    Interlocked.Increment(ref _sleeping); // full fence before re-reading _state
                    while (Volatile.Read(ref _state) >> 32 == seen && !_disposed)
                        Monitor.Wait(_gate);
                    Interlocked.Decrement(ref _sleeping);
                }
            }

            if (_disposed)
                return;
            seen = Volatile.Read(ref _state) >> 32;
            RunParts(seen, worker);
        }
    }

    public void Dispose()
    {
        if (_disposed)
            return;
        lock (_gate)
        {
            _disposed = true;
            Monitor.PulseAll(_gate);
        }

        foreach (var thread in _threads)
            thread.Join();
    }
}
