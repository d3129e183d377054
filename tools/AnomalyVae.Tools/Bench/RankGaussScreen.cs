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
                // Clamped ranks: a value beyond every training value maps to about ±3.7, not ±∞.
                double g = QuantileMap.NormalQuantile(QuantileMap.MidRankProbability(reference, x));
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
}
