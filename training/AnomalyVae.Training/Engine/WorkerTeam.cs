using System.Runtime.ExceptionServices;

namespace AnomalyVae.Training.Engine;

/// <summary>One unit of work split into a fixed number of parts; part i always runs the same slice.</summary>
internal interface IPartitionedWork
{
    void Execute(int part);
}

/// <summary>
/// A fixed team of threads that runs <see cref="IPartitionedWork"/> parts 0..Count-1 in parallel, part 0 on the
/// caller. Unlike Parallel.For it allocates nothing per call and its partition never changes, which the engine
/// needs for zero-allocation steps and bit-identical results. Workers spin briefly between calls (training
/// issues two calls per mini-batch) and then sleep, so an idle team costs no CPU.
/// </summary>
internal sealed class WorkerTeam : IDisposable
{
    private const int SpinIterations = 20_000;

    private readonly Thread[] _threads;
    private readonly object _gate = new();
    private IPartitionedWork? _work;
    private long _generation;
    private int _pending;
    private bool _disposed;
    private Exception? _failure;

    public WorkerTeam(int count)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(count, 1);
        Count = count;
        _threads = new Thread[count - 1];
        for (int i = 0; i < _threads.Length; i++)
        {
            int part = i + 1;
            _threads[i] = new Thread(() => WorkerLoop(part))
            {
                IsBackground = true,
                Name = $"AnomalyVae engine worker {part}",
            };
            _threads[i].Start();
        }
    }

    /// <summary>Number of parts (threads, including the caller).</summary>
    public int Count { get; }

    /// <summary>Runs every part of <paramref name="work"/> and returns when all are done; rethrows the first failure.</summary>
    public void Run(IPartitionedWork work)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (Count == 1)
        {
            work.Execute(0);
            return;
        }

        _work = work;
        _failure = null;
        Volatile.Write(ref _pending, Count - 1);
        lock (_gate)
        {
            _generation++;
            Monitor.PulseAll(_gate);
        }

        try
        {
            work.Execute(0);
        }
        finally
        {
            var spinner = default(SpinWait);
            while (Volatile.Read(ref _pending) != 0)
                spinner.SpinOnce(sleep1Threshold: -1);
            _work = null;
        }

        if (_failure is { } failure)
            ExceptionDispatchInfo.Capture(failure).Throw();
    }

    private void WorkerLoop(int part)
    {
        long seen = 0;
        while (true)
        {
            // Spin first: the next call usually comes within microseconds during training.
            int spins = 0;
            while (Volatile.Read(ref _generation) == seen && !Volatile.Read(ref _disposed) && spins < SpinIterations)
            {
                Thread.SpinWait(8);
                spins++;
            }

            lock (_gate)
            {
                while (_generation == seen && !_disposed)
                    Monitor.Wait(_gate);
                if (_disposed)
                    return;
                seen = _generation;
            }

            try
            {
                _work!.Execute(part);
            }
            catch (Exception ex)
            {
                Interlocked.CompareExchange(ref _failure, ex, null);
            }
            finally
            {
                Interlocked.Decrement(ref _pending);
            }
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
