using System.Text.Json;
using System.Text.Json.Serialization;

namespace AnomalyVae.Model;

/// <summary>
/// Turns anomaly scores (higher = more anomalous) into a decision threshold and p-values, fitted on scores of held-out
/// normal rows: a score strictly above their (1 − fpr) quantile is anomalous, and the p-value P(S ≥ s) is
/// continuous, non-increasing and in (0, 1], with an exponential tail beyond the largest calibration score. How the
/// quantiles, p-values and tail are computed: docs/concepts.md#calibration.
/// </summary>
public sealed class Calibration
{
    /// <summary>Target false-positive rate when none is given: 1 % of normal rows flagged.</summary>
    public const double DefaultFalsePositiveRate = 0.01;

    /// <summary>Share of the largest calibration scores used to fit the exponential tail.</summary>
    public const double TailFraction = 0.05;

    /// <summary>The fewest largest calibration scores the tail is fitted on (fewer when there are not that many).</summary>
    public const int MinTailScores = 5;

    /// <summary>Version of the JSON form written by <see cref="ToJson"/>.</summary>
    public const int FormatVersion = 1;

    private const int BodyKnots = 257;
    private const int TailKnots = 128;

    private static readonly JsonSerializerOptions s_json = new() { PropertyNamingPolicy = JsonNamingPolicy.CamelCase };

    private readonly double[] _levels;
    private readonly double[] _scores;

    private Calibration(double targetFalsePositiveRate, double threshold, long sampleCount, double tailScale,
        double[] levels, double[] scores)
    {
        TargetFalsePositiveRate = targetFalsePositiveRate;
        Threshold = threshold;
        SampleCount = sampleCount;
        TailScale = tailScale;
        _levels = levels;
        _scores = scores;
    }

    /// <summary>The false-positive rate the threshold was chosen for.</summary>
    public double TargetFalsePositiveRate { get; }

    /// <summary>The (1 − fpr) quantile of the calibration scores; scores above it are anomalous.</summary>
    public double Threshold { get; }

    /// <summary>n, the number of calibration scores.</summary>
    public long SampleCount { get; }

    /// <summary>β, the mean excess of the exponential tail used beyond the largest calibration score.</summary>
    public double TailScale { get; }

    /// <summary>The largest calibration score.</summary>
    public double MaxScore => _scores[^1];

    /// <summary>Quantile levels of the stored knots, ascending from 0 to 1.</summary>
    public IReadOnlyList<double> Levels => _levels;

    /// <summary>Scores at <see cref="Levels"/>, non-decreasing.</summary>
    public IReadOnlyList<double> Quantiles => _scores;

    /// <summary>Fits a calibration on scores of held-out normal rows.</summary>
    /// <exception cref="ArgumentException">No scores, a NaN or infinite score, or fpr outside (0, 1).</exception>
    public static Calibration Fit(ReadOnlySpan<double> normalScores, double targetFalsePositiveRate = DefaultFalsePositiveRate)
    {
        if (!(targetFalsePositiveRate > 0 && targetFalsePositiveRate < 1))
            throw new ArgumentOutOfRangeException(nameof(targetFalsePositiveRate), targetFalsePositiveRate, "the target false-positive rate must be in (0, 1)");
        if (normalScores.IsEmpty)
            throw new ArgumentException("calibration needs at least one score of a normal row", nameof(normalScores));
        for (var i = 0; i < normalScores.Length; i++)
        {
            if (!double.IsFinite(normalScores[i]))
                throw new ArgumentException($"calibration score {i} is {normalScores[i]}; scores must be finite numbers", nameof(normalScores));
        }

        var sorted = normalScores.ToArray();
        Array.Sort(sorted);
        var n = sorted.Length;
        // The threshold is the score whose p-value is the target rate, so a flagged score always has p < target. Within
        // the observed range that is the level F = (1 − fpr)(n + 1)/n; with fewer than 1/fpr − 1 scores that level is
        // past the largest score and the exponential tail places it (the type-7 quantile at 1 − fpr would sit between
        // the two largest scores, where p ≈ 2/(n + 1): 4–13 % false positives measured on tables with 20–60
        // calibration rows against a 1 % target).
        var thresholdLevel = Math.Min(1, (1 - targetFalsePositiveRate) * (n + 1) / n);
        var levels = KnotLevels(n, [thresholdLevel, 1 - targetFalsePositiveRate]);
        var scores = levels.Select(p => FeatureSchema.Quantile(sorted, p)).ToArray();
        var tailScale = TailScaleOf(sorted);
        var beyond = Math.Log(1 / ((n + 1) * targetFalsePositiveRate));
        var threshold = beyond > 0 ? sorted[^1] + (tailScale * beyond) : FeatureSchema.Quantile(sorted, thresholdLevel);
        return new Calibration(targetFalsePositiveRate, threshold, n, tailScale, levels, scores);
    }

    /// <summary>
    /// The same score distribution (knots, tail, p-values) with another decision threshold: what recalibration from
    /// feedback changes. <paramref name="targetFalsePositiveRate"/> records the rate the new threshold was chosen for.
    /// </summary>
    /// <exception cref="ArgumentException">A non-finite threshold or a rate outside (0, 1).</exception>
    public Calibration WithThreshold(double threshold, double targetFalsePositiveRate)
    {
        if (!double.IsFinite(threshold))
            throw new ArgumentOutOfRangeException(nameof(threshold), threshold, "the threshold must be a finite number");
        if (!(targetFalsePositiveRate > 0 && targetFalsePositiveRate < 1))
            throw new ArgumentOutOfRangeException(nameof(targetFalsePositiveRate), targetFalsePositiveRate, "the target false-positive rate must be in (0, 1)");
        return new Calibration(targetFalsePositiveRate, threshold, SampleCount, TailScale, _levels, _scores);
    }

    /// <summary>Reads the JSON form written by <see cref="ToJson"/> and checks it.</summary>
    /// <exception cref="FormatException">Malformed JSON, unsupported version, or inconsistent content.</exception>
    public static Calibration FromJson(string json)
    {
        ArgumentNullException.ThrowIfNull(json);
        CalibrationDocument? d;
        try
        {
            d = JsonSerializer.Deserialize<CalibrationDocument>(json, s_json);
        }
        catch (JsonException e)
        {
            throw new FormatException($"calibration JSON is malformed: {e.Message}", e);
        }

        if (d is null || d.Levels is null || d.Quantiles is null)
            throw new FormatException("calibration JSON needs \"levels\" and \"quantiles\"");
        if (d.Version != FormatVersion)
            throw new FormatException($"calibration version {d.Version} is not supported (expected {FormatVersion})");
        var problem =
            !(d.TargetFalsePositiveRate > 0 && d.TargetFalsePositiveRate < 1) ? "targetFalsePositiveRate must be in (0, 1)"
            : d.SampleCount < 1 ? "sampleCount must be at least 1"
            : !(double.IsFinite(d.TailScale) && d.TailScale > 0) ? "tailScale must be finite and positive"
            : !double.IsFinite(d.Threshold) ? "threshold must be finite"
            : d.Levels.Length < 2 || d.Levels.Length != d.Quantiles.Length ? "levels and quantiles must be equally long (at least 2)"
            : d.Levels[0] != 0 || d.Levels[^1] != 1 ? "levels must run from 0 to 1"
            : Enumerable.Range(1, d.Levels.Length - 1).Any(i => !(d.Levels[i] > d.Levels[i - 1])) ? "levels must increase"
            : d.Quantiles.Any(q => !double.IsFinite(q)) ? "quantiles must be finite"
            : Enumerable.Range(1, d.Quantiles.Length - 1).Any(i => d.Quantiles[i] < d.Quantiles[i - 1]) ? "quantiles must not decrease"
            : null;
        if (problem is not null)
            throw new FormatException($"calibration JSON is inconsistent: {problem}");
        return new Calibration(d.TargetFalsePositiveRate, d.Threshold, d.SampleCount, d.TailScale, d.Levels, d.Quantiles);
    }

    /// <summary>The JSON form (camelCase; numbers round-trip exactly).</summary>
    public string ToJson() => JsonSerializer.Serialize(
        new CalibrationDocument(FormatVersion, TargetFalsePositiveRate, Threshold, SampleCount, TailScale, _levels, _scores), s_json);

    /// <summary>Whether <paramref name="score"/> is above the threshold. NaN is never anomalous by this test;
    /// callers should treat a NaN score as an error.</summary>
    public bool IsAnomalous(double score) => score > Threshold;

    /// <summary>P(S ≥ score) for a normal row: non-increasing in the score, in (0, 1]. NaN gives NaN.</summary>
    public double PValue(double score)
    {
        if (double.IsNaN(score))
            return double.NaN;
        return Math.Max(Math.Exp(LogPValue(score)), double.Epsilon);
    }

    /// <summary>ln of <see cref="PValue"/>, without underflow far in the tail (for reporting −log10 p).</summary>
    public double LogPValue(double score)
    {
        if (double.IsNaN(score))
            return double.NaN;
        var n = (double)SampleCount;
        var max = _scores[^1];
        if (score > max)
            return -Math.Log(n + 1) - ((score - max) / TailScale);
        return Math.Log(1 - (Cdf(score) * n / (n + 1)));
    }

    /// <summary>The calibration score at quantile <paramref name="level"/> in [0, 1], interpolated linearly between
    /// the stored knots (the inverse of the piecewise-linear CDF they define).</summary>
    /// <exception cref="ArgumentOutOfRangeException">The level is NaN or outside [0, 1].</exception>
    public double QuantileAt(double level)
    {
        if (!(level >= 0 && level <= 1))
            throw new ArgumentOutOfRangeException(nameof(level), level, "a quantile level must be in [0, 1]");
        var j = Array.BinarySearch(_levels, level);
        if (j >= 0)
            return _scores[j];
        j = ~j;
        var (p0, p1) = (_levels[j - 1], _levels[j]);
        var (q0, q1) = (_scores[j - 1], _scores[j]);
        return q0 + ((q1 - q0) * (level - p0) / (p1 - p0));
    }

    /// <summary>
    /// Fraction of the stored distribution strictly below <paramref name="score"/> (left-continuous, so a score
    /// equal to a tied block of calibration scores counts none of them: P(S ≥ s) includes the ties).
    /// </summary>
    private double Cdf(double score)
    {
        // First knot with q ≥ score.
        var j = Array.BinarySearch(_scores, score);
        if (j < 0)
        {
            j = ~j;
        }
        else
        {
            while (j > 0 && _scores[j - 1] == score)
                j--;
        }

        if (j == 0)
            return 0;
        if (j == _scores.Length)
            return 1;
        var (q0, q1) = (_scores[j - 1], _scores[j]);
        var (p0, p1) = (_levels[j - 1], _levels[j]);
        return p0 + ((p1 - p0) * (score - q0) / (q1 - q0));
    }

    private static double[] KnotLevels(int n, ReadOnlySpan<double> exact)
    {
        var levels = new List<double>(BodyKnots + TailKnots + exact.Length);
        foreach (var level in exact)
            levels.Add(level);
        for (var i = 0; i < BodyKnots; i++)
            levels.Add((double)i / (BodyKnots - 1));

        // Tail: 1 - p from 0.1 down to 1/n, log-spaced, where 257 even knots are too coarse to resolve 1 % or 0.1 %.
        var smallest = 1.0 / n;
        if (smallest < 0.1)
        {
            for (var i = 1; i <= TailKnots; i++)
                levels.Add(1 - (0.1 * Math.Pow(smallest / 0.1, (double)i / TailKnots)));
        }

        levels.Sort();
        var distinct = new List<double>(levels.Count);
        foreach (var p in levels)
        {
            if (distinct.Count == 0 || p - distinct[^1] > 1e-12)
                distinct.Add(p);
        }

        distinct[0] = 0;
        distinct[^1] = 1;
        return [.. distinct];
    }

    private static double TailScaleOf(double[] sorted)
    {
        var n = sorted.Length;
        if (n >= 2)
        {
            // At least 5 excesses: with fewer calibration scores than 1/fpr the threshold itself is placed on this
            // tail, and one or two excesses make β (and so the realized false-positive rate) very noisy.
            var k = Math.Clamp(Math.Max((int)Math.Ceiling(TailFraction * n), MinTailScores), 1, n - 1);
            var threshold = sorted[n - k - 1];
            var excess = 0.0;
            for (var i = n - k; i < n; i++)
                excess += sorted[i] - threshold;
            var beta = excess / k;
            if (beta > 0)
                return beta;

            var spread = (FeatureSchema.Quantile(sorted, 0.75) - FeatureSchema.Quantile(sorted, 0.25)) / 1.349;
            if (spread > 0)
                return spread;
            var mean = sorted.Average();
            var std = Math.Sqrt(sorted.Sum(s => (s - mean) * (s - mean)) / n);
            if (std > 0)
                return std;
        }

        return 1e-3 * Math.Max(1, Math.Abs(sorted[^1]));
    }

    private sealed record CalibrationDocument(
        int Version,
        double TargetFalsePositiveRate,
        double Threshold,
        long SampleCount,
        double TailScale,
        double[]? Levels,
        double[]? Quantiles);
}
