namespace AnomalyVae.Streaming;

/// <summary>
/// The scores of the current <c>scoring_stats</c> window as one process sees them: exact count and maximum,
/// quantiles from a fixed-size uniform reservoir sample (bounded memory, no allocation per score).
/// </summary>
public sealed class ScoreWindow(int windowSeconds, int reservoirSize = 4096, int seed = 1)
{
    private readonly double[] _reservoir = new double[reservoirSize];
    private readonly double[] _scratch = new double[reservoirSize];
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
        var scores = _scratch.AsSpan(0, n);
        _reservoir.AsSpan(0, n).CopyTo(scores);
        // Called once per batch: three selections instead of a full sort (the same order statistics, a tenth of the
        // work). Each narrows the range for the next, since everything right of a selected index is not smaller.
        int i50 = Index(0.5, n), i90 = Index(0.9, n), i99 = Index(0.99, n);
        Select(scores, i50);
        Select(scores[(i50 + 1)..], i90 - i50 - 1);
        Select(scores[(i90 + 1)..], i99 - i90 - 1);
        // The max is exact; a sampled p99 can never exceed it.
        return (scores[i50], scores[i90], Math.Min(scores[i99], _max), _max);
    }

    private static int Index(double q, int n) => (int)Math.Min(n - 1, Math.Floor(q * n));

    /// <summary>Rearranges <paramref name="values"/> (finite) so that values[k] is the one a sort would put there,
    /// nothing left of it is larger and nothing right of it smaller (Hoare's selection, median-of-three pivot).
    /// An index at or past the end (an empty range after the previous selection) leaves the values as they are.</summary>
    private static void Select(Span<double> values, int k)
    {
        int lo = 0, hi = values.Length - 1;
        if (k < 0 || k > hi)
            return;
        while (hi > lo)
        {
            int mid = lo + ((hi - lo) >> 1);
            // Median of three into values[mid], then partition around it.
            if (values[mid] < values[lo])
                (values[mid], values[lo]) = (values[lo], values[mid]);
            if (values[hi] < values[lo])
                (values[hi], values[lo]) = (values[lo], values[hi]);
            if (values[hi] < values[mid])
                (values[hi], values[mid]) = (values[mid], values[hi]);
            double pivot = values[mid];
            int i = lo, j = hi;
            while (i <= j)
            {
                while (values[i] < pivot)
                    i++;
                while (values[j] > pivot)
                    j--;
                if (i <= j)
                {
                    (values[i], values[j]) = (values[j], values[i]);
                    i++;
                    j--;
                }
            }
            if (k <= j)
                hi = j;
            else if (k >= i)
                lo = i;
            else
                return;
        }
    }
}
