namespace AnomalyVae.Model;

/// <summary>
/// Drift of a detector's live scores from its model's calibration: the population stability index over 11 bins whose
/// edges are the calibration quantiles at 0.1, …, 0.9 and 0.99. An empty observed bin counts as
/// <see cref="EmptyBinShare"/>. Formula, bins and readings: docs/streaming.md#retraining-samples-and-drift.
/// </summary>
public static class ScoreDrift
{
    /// <summary>Number of score bins (10 calibration quantile edges).</summary>
    public const int BinCount = 11;

    /// <summary>Observed share used for an empty bin (0.01 %), so that ln(o/e) stays finite.</summary>
    public const double EmptyBinShare = 1e-4;

    /// <summary>Status when there are too few events in the drift window for a verdict.</summary>
    public const string Unknown = "unknown";

    /// <summary>Status when the index is at or below the drift threshold.</summary>
    public const string Ok = "ok";

    /// <summary>Status when the index is above the drift threshold.</summary>
    public const string Drift = "drift";

    private static readonly double[] s_levels = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.99];
    private static readonly double[] s_expected = [0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.09, 0.01];

    /// <summary>Quantile levels of the bin edges: 0.1, 0.2, …, 0.9, 0.99.</summary>
    public static IReadOnlyList<double> EdgeLevels => s_levels;

    /// <summary>Expected share of each bin on calibration-like data: 0.1 (×9), 0.09, 0.01.</summary>
    public static IReadOnlyList<double> ExpectedShares => s_expected;

    /// <summary>The 10 bin edges of a model: its calibration scores at <see cref="EdgeLevels"/>.</summary>
    public static double[] Edges(Calibration calibration)
    {
        ArgumentNullException.ThrowIfNull(calibration);
        var edges = new double[s_levels.Length];
        for (var i = 0; i < edges.Length; i++)
            edges[i] = calibration.QuantileAt(s_levels[i]);
        return edges;
    }

    /// <summary>
    /// The bin of <paramref name="score"/>: the number of edges strictly below it, so bin k holds scores in
    /// (edge[k−1], edge[k]] (bin 0 everything up to the first edge, bin 10 everything above the 0.99 quantile).
    /// Callers skip NaN scores; +∞ lands in the last bin.
    /// </summary>
    public static int BinOf(ReadOnlySpan<double> edges, double score)
    {
        // Ten edges: a linear scan is as fast as a binary search and has no data-dependent depth.
        var bin = 0;
        foreach (var edge in edges)
            bin += score > edge ? 1 : 0;
        return bin;
    }

    /// <summary>Population stability index of the observed bin counts against <see cref="ExpectedShares"/>.</summary>
    /// <exception cref="ArgumentException">Not 11 counts, a negative count, or no events at all.</exception>
    public static double PopulationStabilityIndex(ReadOnlySpan<long> counts)
    {
        if (counts.Length != BinCount)
            throw new ArgumentException($"drift needs {BinCount} bin counts, not {counts.Length}", nameof(counts));
        long total = 0;
        foreach (var count in counts)
        {
            if (count < 0)
                throw new ArgumentException($"bin counts must not be negative ({count})", nameof(counts));
            total += count;
        }
        if (total == 0)
            throw new ArgumentException("the population stability index needs at least one event", nameof(counts));
        var psi = 0.0;
        for (var k = 0; k < BinCount; k++)
        {
            var observed = Math.Max((double)counts[k] / total, EmptyBinShare);
            var expected = s_expected[k];
            psi += (observed - expected) * Math.Log(observed / expected);
        }
        return psi;
    }

    /// <summary>"unknown" below <paramref name="minEvents"/> events, else "drift" when <paramref name="psi"/> exceeds
    /// <paramref name="threshold"/>, else "ok".</summary>
    public static string Status(double psi, long events, double threshold, long minEvents) =>
        events < minEvents || double.IsNaN(psi) ? Unknown : psi > threshold ? Drift : Ok;
}
