using System.Diagnostics;
using System.Globalization;
using AnomalyVae.Cli;
using AnomalyVae.Model;
using AnomalyVae.Training.Engine;

namespace AnomalyVae.Tools;

/// <summary>
/// <c>bench suite</c>: the semi-supervised protocol (<see cref="ProtocolBenchmark.Measure"/>, the real train → ONNX →
/// ONNX Runtime path) on every labelled CSV of a directory, with AUROC / AUPRC per table, their means, the gap to the
/// best baseline per table and a comparison with the directory's BASELINES.md (scikit-learn numbers; a comparison
/// only). This is the table behind the trainer's defaults (docs/quality.md).
/// </summary>
internal static class SuiteBenchmark
{
    /// <summary>The BASELINES.md column of AnomalyVae's own earlier defaults: shown for comparison, not a baseline to beat.</summary>
    private const string PreviousDefaults = "AnomalyVae";

    /// <summary>One table's baseline cells, AUROC / AUPRC per method, from BASELINES.md.</summary>
    private sealed record Baseline(string Method, double Auroc, double Auprc);

    public static int Run(string directory, IReadOnlyList<int> seeds, IReadOnlyCollection<string>? only, string labelColumn,
        VaeTrainingOptions options, TextWriter output, bool screenRankGauss = false, double screenBlend = 0, bool quantileMaps = false)
    {
        var c = CultureInfo.InvariantCulture;
        var files = Directory.GetFiles(directory, "*.csv")
            .Where(f => only is null || only.Contains(Path.GetFileNameWithoutExtension(f)))
            .Order(StringComparer.Ordinal).ToArray();
        if (files.Length == 0)
            throw new CliException($"no CSV tables in {directory}{(only is null ? "" : " matching --tables")}.");
        var baselines = ReadBaselines(Path.Combine(directory, "BASELINES.md"));
        var methods = baselines.Values.SelectMany(b => b.Select(x => x.Method)).Distinct().ToArray();

        output.WriteLine(string.Create(c, $"suite {directory}: {files.Length} tables, seeds {string.Join(",", seeds)}; options: {QualityBenchmark.Describe(options)}{(quantileMaps ? ", quantile maps" : "")}{(screenRankGauss ? $"; SCREEN: rank-Gauss inputs, blend {screenBlend} (not the product's model)" : "")}"));
        output.WriteLine($"{"table",-18} {"rows",6} {"AUROC",7} {"AUPRC",7}  {"best baseline",-20} {"gap",7}  {"before",11}  {"FPR",6}  {"sec",5}");
        var clock = Stopwatch.StartNew();
        var aurocs = new List<double>();
        var auprcs = new List<double>();
        var falsePositiveRates = new List<double>();
        var gaps = new List<(string Table, double Gap)>();
        foreach (var file in files)
        {
            string name = Path.GetFileNameWithoutExtension(file);
            var tableClock = Stopwatch.StartNew();
            int rows = 0;
            var results = ProtocolBenchmark.Measure(file, labelColumn, seeds, options, (r, _, _) => rows = r, screenRankGauss: screenRankGauss, screenBlend: screenBlend, quantileMaps: quantileMaps);
            double auroc = results.Average(r => r.Auroc), auprc = results.Average(r => r.Auprc);
            aurocs.Add(auroc);
            auprcs.Add(auprc);
            double fpr = results.Average(r => r.FalsePositiveRate);
            falsePositiveRates.Add(fpr);
            string best = "";
            string gap = "";
            string before = "";
            var cells = baselines.GetValueOrDefault(name) ?? [];
            if (cells.FirstOrDefault(b => b.Method == PreviousDefaults) is { } previous)
                before = string.Create(c, $"{previous.Auroc:F3}/{previous.Auprc:F3}");
            if (cells.Where(b => b.Method != PreviousDefaults).MaxBy(b => b.Auroc) is { } top)
            {
                best = string.Create(c, $"{top.Method} {top.Auroc:F3}");
                gaps.Add((name, auroc - top.Auroc));
                gap = string.Create(c, $"{auroc - top.Auroc:+0.000;-0.000}");
            }

            output.WriteLine(string.Create(c, $"{name,-18} {rows,6} {auroc,7:F3} {auprc,7:F3}  {best,-20} {gap,7}  {before,11}  {fpr,6:P1}  {tableClock.Elapsed.TotalSeconds,5:F0}"));
        }

        output.WriteLine(string.Create(c, $"{"mean",-18} {"",6} {aurocs.Average(),7:F3} {auprcs.Average(),7:F3}  realized false-positive rate at the calibrated threshold {falsePositiveRates.Average():P2} (target {Calibration.DefaultFalsePositiveRate:P2})"));
        if (gaps.Count > 0)
        {
            var worst = gaps.MinBy(g => g.Gap);
            output.WriteLine(string.Create(c,
                $"worst gap to the best baseline: {worst.Table} {worst.Gap:+0.000;-0.000}; tables more than 0.05 below: {gaps.Count(g => g.Gap < -0.05)}"));
        }

        // Baseline means over the same tables, so a --tables subset compares like with like.
        foreach (var method in methods)
        {
            var cells = files.Select(f => baselines.GetValueOrDefault(Path.GetFileNameWithoutExtension(f))?.FirstOrDefault(b => b.Method == method))
                .Where(b => b is not null).Select(b => b!).ToArray();
            if (cells.Length == files.Length)
                output.WriteLine(string.Create(c, $"  {method,-16} mean {cells.Average(b => b.Auroc):F3} / {cells.Average(b => b.Auprc):F3}"));
        }

        output.WriteLine(string.Create(c, $"total {clock.Elapsed.TotalSeconds:F0} s"));
        return 0;
    }

    /// <summary>
    /// Reads the markdown table of BASELINES.md: a header row naming the methods after "table" and "rows", then one row
    /// per table with "AUROC/AUPRC" cells. Missing file: no comparison.
    /// </summary>
    private static Dictionary<string, List<Baseline>> ReadBaselines(string path)
    {
        var result = new Dictionary<string, List<Baseline>>(StringComparer.Ordinal);
        if (!File.Exists(path))
            return result;
        string[]? methods = null;
        foreach (var line in File.ReadLines(path))
        {
            if (!line.StartsWith('|'))
                continue;
            var cells = line.Trim().Trim('|').Split('|').Select(s => s.Trim().Trim('*')).ToArray();
            if (cells.Length < 3)
                continue;
            if (cells[0] == "table")
            {
                methods = cells[2..];
                continue;
            }

            if (methods is null || cells[0].Length == 0 || cells[0].StartsWith('-') || cells[0] == "mean")
                continue;
            var list = new List<Baseline>();
            for (int i = 0; i < methods.Length && i + 2 < cells.Length; i++)
            {
                var parts = cells[i + 2].Split('/');
                if (parts.Length == 2 && double.TryParse(parts[0], NumberStyles.Float, CultureInfo.InvariantCulture, out double auroc)
                    && double.TryParse(parts[1], NumberStyles.Float, CultureInfo.InvariantCulture, out double auprc))
                    list.Add(new Baseline(methods[i], auroc, auprc));
            }

            result[cells[0]] = list;
        }

        return result;
    }
}
