namespace AnomalyVae.Model;

/// <summary>
/// A numeric column's rank-Gauss map: the piecewise-linear curve through <see cref="Knots"/> (training values t,
/// strictly increasing) and <see cref="Gaussian"/> (Φ⁻¹ of each knot's mid-rank among the training rows), flat
/// beyond the end knots. The standardized value is <see cref="Blend"/>·(squashed robust z) + (1 − Blend)·Q(t):
/// every column gets a Gaussian-shaped body whatever its point masses and discrete codes (what Cardiotocography
/// needed), while the squashed z keeps extreme values extreme (what annthyroid needed). Measured: docs/quality.md.
/// </summary>
public sealed class QuantileMap
{
    /// <summary>Most knots per column: enough for the shape of a marginal, few enough to cost little in the graph.</summary>
    public const int MaxKnots = 65;

    /// <summary>The squashed robust z's share of the standardized value.</summary>
    public const double DefaultBlend = 0.5;

    /// <summary>Mid-ranks are clamped to [ε, 1 − ε] so no knot maps to ±∞.</summary>
    private const double RankClamp = 1e-4;

    private readonly double[] _knots;
    private readonly double[] _gaussian;

    public QuantileMap(double[] knots, double[] gaussian, double blend, double center = 0, double scale = 1)
    {
        ArgumentNullException.ThrowIfNull(knots);
        ArgumentNullException.ThrowIfNull(gaussian);
        var problem = knots.Length < 2 || knots.Length > MaxKnots ? $"needs 2 to {MaxKnots} knots, not {knots.Length}"
            : gaussian.Length != knots.Length ? $"has {knots.Length} knots but {gaussian.Length} Gaussian values"
            : !(blend > 0 && blend <= 1) ? $"blend must be in (0, 1], not {blend}"
            : !double.IsFinite(center) || !(scale > 0 && double.IsFinite(scale)) ? $"needs a finite center and a finite positive scale, not {center} and {scale}"
            : null;
        for (int i = 0; problem is null && i < knots.Length; i++)
        {
            if (!double.IsFinite(knots[i]) || !double.IsFinite(gaussian[i]))
                problem = "knots and Gaussian values must be finite";
            else if (i > 0 && !(knots[i] > knots[i - 1] && gaussian[i] >= gaussian[i - 1]))
                problem = "knots must increase strictly and Gaussian values must not decrease";
        }
        if (problem is not null)
            throw new ArgumentException($"A quantile map {problem}.");
        _knots = knots;
        _gaussian = gaussian;
        Blend = blend;
        Center = center;
        Scale = scale;
    }

    /// <summary>Robust center and scale of the blend over the training rows: the blend is standardized again, so
    /// every mapped column enters the model at unit scale whatever the two halves' spreads were.</summary>
    public double Center { get; }

    /// <inheritdoc cref="Center"/>
    public double Scale { get; }

    /// <summary>This map with the blend's center and scale.</summary>
    public QuantileMap Restandardized(double center, double scale) => new(_knots, _gaussian, Blend, center, scale);

    public IReadOnlyList<double> Knots => _knots;

    public IReadOnlyList<double> Gaussian => _gaussian;

    public double Blend { get; }

    /// <summary>
    /// The map of training values <paramref name="t"/> (transformed units, no NaN), or null for a column with fewer
    /// than two distinct values. Knots: every distinct value when there are at most <see cref="MaxKnots"/>, else
    /// the values at <see cref="MaxKnots"/> evenly spaced ranks (ties merged).
    /// </summary>
    public static QuantileMap? Fit(ReadOnlySpan<double> t, double blend = DefaultBlend)
    {
        var sorted = t.ToArray();
        Array.Sort(sorted);
        int n = sorted.Length;
        var distinct = new List<double>();
        foreach (var v in sorted)
        {
            if (distinct.Count == 0 || v > distinct[^1])
                distinct.Add(v);
        }
        if (distinct.Count < 2)
            return null;
        var knots = distinct;
        if (distinct.Count > MaxKnots)
        {
            knots = [];
            for (int i = 0; i < MaxKnots; i++)
            {
                double v = sorted[(int)Math.Round((double)i * (n - 1) / (MaxKnots - 1))];
                if (knots.Count == 0 || v > knots[^1])
                    knots.Add(v);
            }
        }
        var gaussian = new double[knots.Count];
        for (int i = 0; i < knots.Count; i++)
            gaussian[i] = NormalQuantile(MidRankProbability(sorted, knots[i]));
        return new QuantileMap([.. knots], gaussian, blend);
    }

    /// <summary>Q(t): linear between knots, the end knots' values beyond them.</summary>
    public double Apply(double t)
    {
        int i = Segment(t);
        if (i < 0)
            return _gaussian[0];
        if (i >= _knots.Length - 1)
            return _gaussian[^1];
        double share = (t - _knots[i]) / (_knots[i + 1] - _knots[i]);
        return _gaussian[i] + (share * (_gaussian[i + 1] - _gaussian[i]));
    }

    /// <summary>dQ/dt: the segment's slope, 0 beyond the end knots.</summary>
    public double Slope(double t)
    {
        int i = Segment(t);
        return i < 0 || i >= _knots.Length - 1 ? 0 : (_gaussian[i + 1] - _gaussian[i]) / (_knots[i + 1] - _knots[i]);
    }

    /// <summary>The index i of the segment [knot i, knot i+1) holding t; −1 below the first knot, the last index at or above the last.</summary>
    private int Segment(double t)
    {
        if (!(t >= _knots[0]))
            return -1;
        int lo = 0, hi = _knots.Length - 1;
        while (lo < hi)
        {
            int mid = (lo + hi + 1) / 2;
            if (_knots[mid] <= t)
                lo = mid;
            else
                hi = mid - 1;
        }
        return lo;
    }

    /// <summary>
    /// x's mid-rank among the <paramref name="sorted"/> values as a probability, (mid-rank + 0.5) / (n + 1), clamped
    /// to [10⁻⁴, 1 − 10⁻⁴]: ties share their middle rank, a value beyond every one gets (n + 0.5) / (n + 1).
    /// </summary>
    public static double MidRankProbability(double[] sorted, double x)
    {
        ArgumentNullException.ThrowIfNull(sorted);
        int below = LowerBound(sorted, x, strict: true), atOrBelow = LowerBound(sorted, x, strict: false);
        return Math.Clamp(((below + atOrBelow) / 2.0 + 0.5) / (sorted.Length + 1), RankClamp, 1 - RankClamp);
    }

    /// <summary>Count of sorted values below x (strict) or at most x.</summary>
    private static int LowerBound(double[] sorted, double x, bool strict)
    {
        int lo = 0, hi = sorted.Length;
        while (lo < hi)
        {
            int mid = (lo + hi) / 2;
            if (strict ? sorted[mid] < x : sorted[mid] <= x)
                lo = mid + 1;
            else
                hi = mid;
        }
        return lo;
    }

    /// <summary>
    /// Φ⁻¹(p) for p in (0, 1): Acklam's rational approximation (relative error below 1.2·10⁻⁹). Our own because it is
    /// one function and no statistics package is among the served ones (ENVIRONMENT.md).
    /// </summary>
    public static double NormalQuantile(double p)
    {
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(p, 0);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(p, 1);
        ReadOnlySpan<double> a = [-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02, 1.383577518672690e+02, -3.066479806614716e+01, 2.506628277459239e+00];
        ReadOnlySpan<double> b = [-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02, 6.680131188771972e+01, -1.328068155288572e+01];
        ReadOnlySpan<double> c = [-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00, -2.549671010331076e+00, 4.374664141464968e+00, 2.938163982698783e+00];
        ReadOnlySpan<double> d = [7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00, 3.754408661907416e+00];
        const double low = 0.02425;
        if (p < low)
        {
            double q = Math.Sqrt(-2 * Math.Log(p));
            return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
        }
        if (p > 1 - low)
            return -NormalQuantile(1 - p);
        double r = p - 0.5, s = r * r;
        return (((((a[0] * s + a[1]) * s + a[2]) * s + a[3]) * s + a[4]) * s + a[5]) * r / (((((b[0] * s + b[1]) * s + b[2]) * s + b[3]) * s + b[4]) * s + 1);
    }
}
