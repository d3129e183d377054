using AnomalyVae.Model;

namespace AnomalyVae.UnitTests.Model;

public class ScoreDriftTests
{
    private static double[] Gaussian(int n, int seed, double mean = 0)
    {
        var random = new Random(seed);
        return [.. Enumerable.Range(0, n).Select(_ =>
            mean + (Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble())))];
    }

    private static long[] Count(Calibration calibration, IEnumerable<double> scores)
    {
        var edges = ScoreDrift.Edges(calibration);
        var counts = new long[ScoreDrift.BinCount];
        foreach (var score in scores)
            counts[ScoreDrift.BinOf(edges, score)]++;
        return counts;
    }

    [Fact]
    public void Quantile_at_a_level_interpolates_the_knots()
    {
        // Scores 1..1000: the type-7 quantile is 1 + 999·p, linear, so interpolating knots reproduces it exactly.
        var calibration = Calibration.Fit([.. Enumerable.Range(1, 1000).Select(i => (double)i)]);
        foreach (var level in new[] { 0.0, 0.1, 0.25, 0.5, 0.9, 0.99, 0.995, 1.0 })
            Assert.Equal(1 + (999 * level), calibration.QuantileAt(level), 9);
        Assert.Throws<ArgumentOutOfRangeException>(() => calibration.QuantileAt(1.5));
        Assert.Throws<ArgumentOutOfRangeException>(() => calibration.QuantileAt(double.NaN));
    }

    [Fact]
    public void Bins_split_the_calibration_scores_in_the_expected_shares()
    {
        var calibration = Calibration.Fit([.. Enumerable.Range(1, 1000).Select(i => (double)i)]);
        var edges = ScoreDrift.Edges(calibration);
        Assert.Equal([100.9, 200.8, 300.7, 400.6, 500.5, 600.4, 700.3, 800.2, 900.1, 990.01], edges.Select(e => Math.Round(e, 6)));
        // A score equal to an edge belongs to the bin below it; +inf to the last bin.
        Assert.Equal(0, ScoreDrift.BinOf(edges, 100.9));
        Assert.Equal(1, ScoreDrift.BinOf(edges, 100.900001));
        Assert.Equal(0, ScoreDrift.BinOf(edges, double.NegativeInfinity));
        Assert.Equal(10, ScoreDrift.BinOf(edges, double.PositiveInfinity));
        var counts = Count(calibration, Enumerable.Range(1, 1000).Select(i => (double)i));
        Assert.Equal([100, 100, 100, 100, 100, 100, 100, 100, 100, 90, 10], counts);
        Assert.Equal(0, ScoreDrift.PopulationStabilityIndex(counts), 12);
    }

    [Fact]
    public void Same_distribution_is_near_zero_and_a_shift_is_large()
    {
        var calibration = Calibration.Fit(Gaussian(20_000, seed: 1));
        double same = ScoreDrift.PopulationStabilityIndex(Count(calibration, Gaussian(20_000, seed: 2)));
        double small = ScoreDrift.PopulationStabilityIndex(Count(calibration, Gaussian(20_000, seed: 3, mean: 0.2)));
        double shifted = ScoreDrift.PopulationStabilityIndex(Count(calibration, Gaussian(20_000, seed: 4, mean: 1)));
        Assert.InRange(same, 0, 0.005);
        Assert.InRange(small, 0.02, 0.2);
        Assert.True(shifted > 0.25, $"PSI of a 1 sd shift is {shifted}");
        Assert.Equal(ScoreDrift.Ok, ScoreDrift.Status(same, 20_000, threshold: 0.2, minEvents: 500));
        Assert.Equal(ScoreDrift.Drift, ScoreDrift.Status(shifted, 20_000, threshold: 0.2, minEvents: 500));
        Assert.Equal(ScoreDrift.Unknown, ScoreDrift.Status(shifted, 499, threshold: 0.2, minEvents: 500));
    }

    [Fact]
    public void Empty_bins_keep_the_index_finite()
    {
        // Everything in the top bin: every other bin is empty and counts as the share EmptyBinShare.
        long[] counts = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1000];
        double psi = ScoreDrift.PopulationStabilityIndex(counts);
        double expected = ((1 - 0.01) * Math.Log(1 / 0.01))
            + (9 * (ScoreDrift.EmptyBinShare - 0.1) * Math.Log(ScoreDrift.EmptyBinShare / 0.1))
            + ((ScoreDrift.EmptyBinShare - 0.09) * Math.Log(ScoreDrift.EmptyBinShare / 0.09));
        Assert.True(double.IsFinite(psi));
        Assert.Equal(expected, psi, 9);
    }

    [Fact]
    public void Bad_counts_are_refused()
    {
        Assert.Throws<ArgumentException>(() => ScoreDrift.PopulationStabilityIndex(new long[10]));
        Assert.Throws<ArgumentException>(() => ScoreDrift.PopulationStabilityIndex(new long[11]));
        Assert.Throws<ArgumentException>(() => ScoreDrift.PopulationStabilityIndex((long[])[1, 1, 1, 1, 1, 1, 1, 1, 1, 1, -1]));
    }
}
