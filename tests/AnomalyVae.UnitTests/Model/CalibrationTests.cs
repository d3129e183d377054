using AnomalyVae.Model;

namespace AnomalyVae.UnitTests.Model;

public class CalibrationTests
{
    private static double[] Gaussian(int n, int seed, double mean = 0, double sd = 1)
    {
        var random = new Random(seed);
        return [.. Enumerable.Range(0, n).Select(_ =>
            mean + (sd * Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble())))];
    }

    private static double[] Exponential(int n, int seed, double mean)
    {
        var random = new Random(seed);
        return [.. Enumerable.Range(0, n).Select(_ => -mean * Math.Log(1 - random.NextDouble()))];
    }

    [Fact]
    public void ThresholdIsTheScoreWhosePValueIsTheTarget()
    {
        // Scores 1..1000: p = 0.01 where F = 0.99·1001/1000 = 0.99099; type-7 quantile there: h = 999·0.99099 =
        // 989.99901 → 990 + 0.99901·(991 − 990) = 990.99901.
        var scores = Enumerable.Range(1, 1000).Select(i => (double)i).Reverse().ToArray();
        var calibration = Calibration.Fit(scores);
        Assert.Equal(Calibration.DefaultFalsePositiveRate, calibration.TargetFalsePositiveRate);
        Assert.Equal(990.99901, calibration.Threshold, 9);
        Assert.Equal(1000, calibration.MaxScore);
        Assert.Equal(1000, calibration.SampleCount);
        Assert.True(calibration.IsAnomalous(991));
        Assert.False(calibration.IsAnomalous(990.99901));
    }

    [Fact]
    public void PValueAtTheThresholdIsTheTargetRate()
    {
        foreach (var fpr in new[] { 0.05, 0.01, 0.001 })
        {
            var calibration = Calibration.Fit(Gaussian(100_000, seed: 1), fpr);
            // Exactly fpr by construction (the threshold level is a knot).
            Assert.Equal(fpr, calibration.PValue(calibration.Threshold), 9);

            // And on fresh normal data about fpr of the rows exceed it (binomial sd ≤ 7e-4 here).
            var fresh = Gaussian(100_000, seed: 2);
            var flagged = fresh.Count(calibration.IsAnomalous) / (double)fresh.Length;
            Assert.InRange(flagged, fpr * 0.8 - 0.0005, fpr * 1.2 + 0.0005);
        }
    }

    [Theory]
    [InlineData(20)]
    [InlineData(50)]
    [InlineData(98)]
    public void FewerScoresThanTheTargetCanPlaceExtrapolateTheTail(int n)
    {
        // Fewer than 1/fpr − 1 scores: the threshold lies beyond the largest, where the tail's p-value is the target.
        // Over many small calibrations of exponential-tailed scores, the realized false-positive rate stays near the
        // 1 % target; the (1 − fpr) quantile between the two largest scores flagged about 2/(n + 1) of normal rows.
        double flaggedSum = 0, quantileFlaggedSum = 0;
        const int Calibrations = 400;
        var fresh = Exponential(20_000, seed: 99, mean: 1);
        Array.Sort(fresh);
        for (var seed = 0; seed < Calibrations; seed++)
        {
            var scores = Exponential(n, seed, mean: 1);
            var calibration = Calibration.Fit(scores);
            Assert.True(calibration.Threshold > calibration.MaxScore);
            Assert.Equal(0.01, calibration.PValue(calibration.Threshold), 9);
            flaggedSum += Above(fresh, calibration.Threshold);
            Array.Sort(scores);
            quantileFlaggedSum += Above(fresh, scores[^2] + (0.99 * (n - 1) % 1 * (scores[^1] - scores[^2])));
        }
        var realized = flaggedSum / Calibrations;
        Assert.True(realized is > 0.004 and < 0.02, $"realized {realized:P2}, the old rule {quantileFlaggedSum / Calibrations:P2}");
        Assert.True(quantileFlaggedSum / Calibrations > 1.5 * realized, $"the old rule flagged {quantileFlaggedSum / Calibrations:P2}");

        static double Above(double[] sorted, double threshold)
        {
            var i = Array.BinarySearch(sorted, threshold);
            i = i < 0 ? ~i : i + 1;
            return (sorted.Length - i) / (double)sorted.Length;
        }
    }

    [Fact]
    public void PValueMatchesTheEmpiricalSurvivalInsideTheRange()
    {
        var scores = Gaussian(20_000, seed: 3, mean: 50, sd: 10);
        var calibration = Calibration.Fit(scores);
        foreach (var s in new[] { 20.0, 35, 45, 50, 55, 65, 75, 80 })
        {
            var empirical = scores.Count(v => v >= s) / (double)scores.Length;
            Assert.InRange(calibration.PValue(s), empirical - 0.003, empirical + 0.003);
        }
    }

    [Fact]
    public void PValueIsMonotoneAndInUnitInterval()
    {
        var scores = Gaussian(5000, seed: 4).Concat(Enumerable.Repeat(1.0, 300)).ToArray(); // a tied block too
        var calibration = Calibration.Fit(scores);
        var previous = 1.0;
        for (var s = scores.Min() - 2; s < calibration.MaxScore + (50 * calibration.TailScale); s += 0.001)
        {
            var p = calibration.PValue(s);
            Assert.True(p <= previous, $"p({s}) = {p} > {previous}");
            Assert.True(p > 0 && p <= 1, $"p({s}) = {p}");
            previous = p;
        }

        Assert.Equal(1, calibration.PValue(scores.Min()));
        Assert.Equal(1, calibration.PValue(double.MinValue));
    }

    [Fact]
    public void TiesCountAsAtLeastTheScore()
    {
        // Half the scores are exactly 1: P(S ≥ 1) must include them (≈ 1), P(S ≥ 1 + ε) must not (≈ 0.5).
        var scores = Enumerable.Repeat(1.0, 500).Concat(Enumerable.Range(0, 500).Select(i => 2 + (i / 500.0))).ToArray();
        var calibration = Calibration.Fit(scores);
        Assert.Equal(1, calibration.PValue(1.0));
        Assert.InRange(calibration.PValue(1.5), 0.49, 0.51);
    }

    [Fact]
    public void TailBeyondTheMaximumDecaysExponentially()
    {
        var n = 10_000;
        var calibration = Calibration.Fit(Exponential(n, seed: 5, mean: 2));

        // For exponential scores the mean excess over any high level is the mean: β ≈ 2.
        Assert.InRange(calibration.TailScale, 1.7, 2.3);

        var max = calibration.MaxScore;
        var atMax = calibration.PValue(max);
        Assert.Equal(1.0 / (n + 1), atMax, 12);
        Assert.Equal(atMax * Math.Exp(-1), calibration.PValue(max + calibration.TailScale), 12);
        Assert.Equal(atMax * Math.Exp(-3), calibration.PValue(max + (3 * calibration.TailScale)), 12);
        Assert.True(calibration.PValue(max + 1e-9) < atMax);

        // Far out: no underflow to 0; the log p-value keeps going.
        Assert.True(calibration.PValue(max + 1e6) > 0);
        Assert.Equal(-Math.Log(n + 1) - (1e6 / calibration.TailScale), calibration.LogPValue(max + 1e6), 6);
    }

    [Fact]
    public void AllEqualScoresStillGiveAUsableCalibration()
    {
        var calibration = Calibration.Fit(Enumerable.Repeat(5.0, 100).ToArray());
        Assert.Equal(5, calibration.Threshold);
        Assert.Equal(1, calibration.PValue(5));
        Assert.Equal(1, calibration.PValue(4));
        Assert.True(calibration.TailScale > 0);
        var above = calibration.PValue(5.001);
        Assert.True(above <= 1.0 / 101 && above > 0);
        Assert.True(calibration.PValue(6) < above);
        Assert.False(calibration.IsAnomalous(5));
        Assert.True(calibration.IsAnomalous(5.001));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(7)]
    public void TinySamplesWork(int n)
    {
        var scores = Enumerable.Range(0, n).Select(i => (double)i * i).ToArray();
        var calibration = Calibration.Fit(scores, 0.1);
        Assert.Equal(n, calibration.SampleCount);
        Assert.Equal(1, calibration.PValue(0));
        var previous = 1.0;
        for (var s = -1.0; s < scores[^1] + 10; s += 0.01)
        {
            var p = calibration.PValue(s);
            Assert.True(p <= previous && p > 0);
            previous = p;
        }
    }

    [Fact]
    public void BadInputIsRejected()
    {
        var e = Assert.Throws<ArgumentException>(() => Calibration.Fit([1, 2, 3, double.NaN, 5]));
        Assert.Contains("score 3", e.Message);
        Assert.Throws<ArgumentException>(() => Calibration.Fit([1, double.PositiveInfinity]));
        Assert.Throws<ArgumentException>(() => Calibration.Fit([]));
        Assert.Throws<ArgumentOutOfRangeException>(() => Calibration.Fit([1, 2], 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => Calibration.Fit([1, 2], 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => Calibration.Fit([1, 2], double.NaN));
        Assert.True(double.IsNaN(Calibration.Fit([1, 2]).PValue(double.NaN)));
    }

    [Fact]
    public void StorageIsCompact()
    {
        var calibration = Calibration.Fit(Gaussian(1_000_000, seed: 6));
        Assert.InRange(calibration.Levels.Count, 300, 400);
        Assert.True(calibration.ToJson().Length < 20_000);
    }

    [Fact]
    public void JsonRoundTripGivesIdenticalPValues()
    {
        var calibration = Calibration.Fit(Gaussian(3000, seed: 7), 0.02);
        var back = Calibration.FromJson(calibration.ToJson());
        Assert.Equal(calibration.Threshold, back.Threshold);
        Assert.Equal(calibration.TargetFalsePositiveRate, back.TargetFalsePositiveRate);
        Assert.Equal(calibration.TailScale, back.TailScale);
        for (var s = -5.0; s < 10; s += 0.01)
            Assert.Equal(calibration.PValue(s), back.PValue(s));
    }

    [Theory]
    [InlineData("""{"version":2,"targetFalsePositiveRate":0.01,"threshold":1,"sampleCount":2,"tailScale":1,"levels":[0,1],"quantiles":[0,1]}""", "version 2")]
    [InlineData("""{"version":1,"targetFalsePositiveRate":0.01,"threshold":1,"sampleCount":2,"tailScale":0,"levels":[0,1],"quantiles":[0,1]}""", "tailScale")]
    [InlineData("""{"version":1,"targetFalsePositiveRate":0.01,"threshold":1,"sampleCount":2,"tailScale":1,"levels":[0,0.5],"quantiles":[0,1]}""", "from 0 to 1")]
    [InlineData("""{"version":1,"targetFalsePositiveRate":0.01,"threshold":1,"sampleCount":2,"tailScale":1,"levels":[0,0.5,1],"quantiles":[0,2,1]}""", "must not decrease")]
    [InlineData("""{"version":1,"targetFalsePositiveRate":0.01,"threshold":1,"sampleCount":2,"tailScale":1,"levels":[0,1],"quantiles":[0]}""", "equally long")]
    [InlineData("""{"version":1,"targetFalsePositiveRate":0,"threshold":1,"sampleCount":2,"tailScale":1,"levels":[0,1],"quantiles":[0,1]}""", "targetFalsePositiveRate")]
    [InlineData("""{"version":1}""", "levels")]
    [InlineData("[]", "malformed")]
    public void FromJsonRejectsInconsistentContent(string json, string expected)
    {
        var e = Assert.Throws<FormatException>(() => Calibration.FromJson(json));
        Assert.Contains(expected, e.Message);
    }
}
