namespace AnomalyVae.Service;

/// <summary>
/// The scores of the current <c>scoring_stats</c> window as one process sees them: exact count and maximum,
/// quantiles from a fixed-size uniform reservoir sample (bounded memory, no allocation per score).
/// </summary>
public sealed class ScoreWindow(int windowSeconds, int reservoirSize = 4096, int seed = 1)
{
    private readonly double[] _reservoir = new double[reservoirSize];
    private readonly double[] _sorted = new double[reservoirSize];
    private readonly Random _random = new(seed);
    private long _seen;
    private double _max = double.NegativeInfinity;

    public int WindowSeconds { get; } = windowSeconds;

    /// <summary>Start of the current window (UTC, aligned to <see cref="WindowSeconds"/>).</summary>
    public DateTime Start { get; private set; }

    /// <summary>Moves to the window holding <paramref name="now"/>, forgetting the previous one's scores.</summary>
    public void Advance(DateTime now)
    {
        long size = TimeSpan.TicksPerSecond * WindowSeconds;
        var start = new DateTime(now.Ticks - (now.Ticks % size), DateTimeKind.Utc);
        if (start == Start)
            return;
        Start = start;
        _seen = 0;
        _max = double.NegativeInfinity;
    }

    public void Add(double score)
    {
        if (!double.IsFinite(score))
            return;
        _max = Math.Max(_max, score);
        long seen = _seen++;
        if (seen < _reservoir.Length)
        {
            _reservoir[seen] = score;
        }
        else
        {
            long slot = _random.NextInt64(seen + 1);
            if (slot < _reservoir.Length)
                _reservoir[slot] = score;
        }
    }

    /// <summary>p50, p90, p99 and max of the window so far; null when it has no score.</summary>
    public (double P50, double P90, double P99, double Max)? Quantiles()
    {
        if (_seen == 0)
            return null;
        int n = (int)Math.Min(_seen, _reservoir.Length);
        var sorted = _sorted.AsSpan(0, n);
        _reservoir.AsSpan(0, n).CopyTo(sorted);
        sorted.Sort();
        // The max is exact; a sampled p99 can never exceed it.
        return (sorted[Index(0.5, n)], sorted[Index(0.9, n)], Math.Min(sorted[Index(0.99, n)], _max), _max);
    }

    private static int Index(double q, int n) => (int)Math.Min(n - 1, Math.Floor(q * n));
}
