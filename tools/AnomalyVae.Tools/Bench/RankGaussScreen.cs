using System.Globalization;
using System.Text;
using AnomalyVae.Model;

namespace AnomalyVae.Tools;

/// <summary>
/// <c>bench suite --screen-rank-gauss</c>: a screen for a quantile (rank-Gauss) input transform before anyone builds
/// it into the graph. Each numeric column's cells become Φ⁻¹ of their mid-rank among the split's training rows (fitted
/// on the training half only, so the test rows are mapped as a deployed model would map them), written to a temporary
/// CSV that the product path then reads; the log suggestion is dropped (the values are already Gaussian-shaped). The
/// model it trains expects transformed input, so it is a measurement, not a model `train` would write.
/// </summary>
internal static class RankGaussScreen
{
    /// <summary>Ranks are clamped to [ε, 1 − ε] so a value beyond every training value maps to about ±3.7, not ±∞.</summary>
    private const double RankClamp = 1e-4;

    public static (FeatureSpec Spec, IReadOnlyList<string>[] Records, string Path) Apply(
        FeatureSpec spec, IReadOnlyList<string> header, IReadOnlyList<string>[] records, int[] trainRows, double blend = 0)
    {
        if (!(blend >= 0 && blend <= 1))
            throw new ArgumentOutOfRangeException(nameof(blend), blend, "the blend weight is a share in [0, 1]");
        var numeric = spec.Features.Where(f => f.Kind == FeatureKind.Numeric).Select(f => f.Name).ToHashSet(StringComparer.Ordinal);
        var columns = Enumerable.Range(0, header.Count).Where(c => numeric.Contains(header[c])).ToArray();
        var transformed = records.Select(r => r.ToArray()).ToArray();
        foreach (int c in columns)
        {
            var reference = trainRows.Select(i => records[i][c]).Where(v => CellText.TryParseNumber(v, out _))
                .Select(v => { CellText.TryParseNumber(v, out var x); return x; }).Order().ToArray();
            if (reference.Length == 0)
                continue;
            // The blend's other half: the product's own robust z and tail squash, fitted the same way on the training
            // rows (FeatureSchema), so blend 1 is about what the product sees without the screen (no log, no clamp).
            var (median, scale) = FeatureSchema.RobustLocationScale(reference);
            double k = FeatureSchema.FitTailScale(reference, median, scale);
            foreach (var row in transformed)
            {
                if (!CellText.TryParseNumber(row[c], out var x))
                    continue;
                int below = LowerBound(reference, x, strict: true), atOrBelow = LowerBound(reference, x, strict: false);
                double p = Math.Clamp(((below + atOrBelow) / 2.0 + 0.5) / (reference.Length + 1), RankClamp, 1 - RankClamp);
                double g = NormalQuantile(p);
                if (blend > 0)
                {
                    double z = (x - median) / scale;
                    g = (blend * k * Math.Asinh(z / k)) + ((1 - blend) * g);
                }
                row[c] = g.ToString("R", CultureInfo.InvariantCulture);
            }
        }

        var path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"rank-gauss-{Guid.NewGuid():N}.csv");
        var text = new StringBuilder();
        text.AppendLine(string.Join(',', header));
        foreach (var row in transformed)
            text.AppendLine(string.Join(',', row));
        File.WriteAllText(path, text.ToString());
        var newSpec = new FeatureSpec(spec.Features.Select(f => numeric.Contains(f.Name) ? f with { Log = false } : f), spec.Ignore);
        return (newSpec, transformed, path);
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

    /// <summary>Φ⁻¹(p), Acklam's rational approximation without the refinement step (error about 1e-5 in the tails): enough for a screen.</summary>
    internal static double NormalQuantile(double p)
    {
        double[] a = [-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02, 1.383577518672690e+02, -3.066479806614716e+01, 2.506628277459239e+00];
        double[] b = [-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02, 6.680131188771972e+01, -1.328068155288572e+01];
        double[] c = [-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00, -2.549671010331076e+00, 4.374664141464968e+00, 2.938163982698783e+00];
        double[] d = [7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00, 3.754408661907416e+00];
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
