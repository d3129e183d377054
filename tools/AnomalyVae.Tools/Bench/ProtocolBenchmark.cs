using System.Diagnostics;
using System.Globalization;
using AnomalyVae.Cli;
using AnomalyVae.Inference;
using AnomalyVae.Model;
using AnomalyVae.Training;
using AnomalyVae.Training.Engine;

namespace AnomalyVae.Tools;

/// <summary>
/// The semi-supervised protocol for labelled tables: per seed, train on a random half of the normal rows and
/// score the other half plus every anomaly through the exported ONNX model; print AUROC and AUPRC per seed
/// and their mean. Lets anyone check detection quality on their own labelled data with default settings.
/// </summary>
internal static class ProtocolBenchmark
{
    /// <summary>Training rows per split at most (the suite's protocol; only tables of over 200,000 normal rows reach it).</summary>
    public const int MaxTrainRows = 100_000;

    /// <summary>
    /// One seed's result: AUROC, AUPRC, the share of the test's normal rows above the calibrated threshold (the
    /// realized false-positive rate, against the target the calibration aimed at), the trained model and the time.
    /// </summary>
    public sealed record SeedResult(int Seed, double Auroc, double Auprc, double FalsePositiveRate, TrainedModel Trained, TimeSpan Elapsed);

    public static int Run(string dataPath, string labelColumn, int seeds, VaeTrainingOptions options, TextWriter output)
    {
        var c = CultureInfo.InvariantCulture;
        output.WriteLine($"ensemble of {options.Ensemble}");
        var results = Measure(dataPath, labelColumn, [.. Enumerable.Range(0, seeds)], options,
            (rows, anomalies, features) => output.WriteLine(
                $"{Path.GetFileName(dataPath)}: {rows} rows, {anomalies} anomalies, {features} features; train on half the normal rows, test on the rest + all anomalies"),
            r => output.WriteLine(string.Create(c,
                $"seed {r.Seed}: AUROC {r.Auroc:F4}  AUPRC {r.Auprc:F4}  FPR {r.FalsePositiveRate:P2} (target {r.Trained.Calibration.TargetFalsePositiveRate:P2})  ({r.Trained.Summary.Epochs} epochs, best {r.Trained.Summary.BestEpoch}, {r.Elapsed.TotalSeconds:F1} s)")));
        output.WriteLine(string.Create(c, $"mean AUROC {results.Average(r => r.Auroc):F4} (min {results.Min(r => r.Auroc):F4})  mean AUPRC {results.Average(r => r.Auprc):F4}  mean FPR {results.Average(r => r.FalsePositiveRate):P2}"));
        return 0;
    }

    /// <summary>
    /// Runs the protocol for each seed through the product path: spec inferred from the file (label left out), schema
    /// fitted on the training half, <c>Trainer.Train</c>, ONNX export, <c>ModelBundle.Load(bytes)</c>
    /// and <c>bundle.Score(table)</c>. The normal rows are shuffled with our own seeded generator, not numpy's, so
    /// the splits differ from those behind a scikit-learn baseline while following the same protocol.
    /// </summary>
    public static List<SeedResult> Measure(string dataPath, string labelColumn, IReadOnlyList<int> seeds, VaeTrainingOptions options,
        Action<int, int, int>? onLoaded = null, Action<SeedResult>? onSeed = null, bool screenRankGauss = false, double screenBlend = 0, bool quantileMaps = false)
    {
        var spec = Trainer.InferSpec(dataPath);
        if (quantileMaps)
            spec = spec.WithQuantileMaps();
        if (!spec.Ignore.Contains(labelColumn, StringComparer.Ordinal) && spec.Features.Any(f => f.Name == labelColumn))
            spec = new FeatureSpec(spec.Features.Where(f => f.Name != labelColumn), [.. spec.Ignore, labelColumn]);
        var (header, records) = ReadAll(dataPath);
        var all = FeatureTable.Load(dataPath, FeatureSchema.Fit(spec, header, records), [labelColumn]);
        int[] labels = all.GetLabels(labelColumn);
        int[] normal = [.. Enumerable.Range(0, labels.Length).Where(i => labels[i] == 0)];
        int[] anomalies = [.. Enumerable.Range(0, labels.Length).Where(i => labels[i] == 1)];
        if (normal.Length < 4 || anomalies.Length == 0)
            throw new CliException($"the protocol needs normal rows and anomalies in '{labelColumn}'; found {normal.Length} and {anomalies.Length}.");
        onLoaded?.Invoke(labels.Length, anomalies.Length, all.FeatureCount);

        var results = new List<SeedResult>();
        foreach (int seed in seeds)
        {
            var clock = Stopwatch.StartNew();
            var shuffled = (int[])normal.Clone();
            var rng = new DeterministicRandom((ulong)seed, 0xB0C0);
            rng.Shuffle(shuffled);
            int half = Math.Min(shuffled.Length / 2, MaxTrainRows);
            int[] trainRows = [.. shuffled[..half].Order()];
            int[] testRows = [.. shuffled[half..], .. anomalies];
            // Fit standardization and vocabularies on the training half only, as a user would; the model then
            // scores raw test rows with that schema.
            var seedSpec = spec;
            var seedRecords = records;
            string seedPath = dataPath;
            if (screenRankGauss)
                (seedSpec, seedRecords, seedPath) = RankGaussScreen.Apply(spec, header, records, trainRows, screenBlend);
            var schema = FeatureSchema.Fit(seedSpec, header, [.. trainRows.Select(i => seedRecords[i])]);
            var table = FeatureTable.Load(seedPath, schema);
            if (screenRankGauss)
                File.Delete(seedPath);
            var testTable = table.Select(testRows);
            var trained = Trainer.Train(table.Select(trainRows), options with { Seed = seed });
            // options.Ensemble VAEs in the one exported graph, as `anomalyvae train` writes them.
            double[] scores = [.. Score(trained, testTable, $"seed {seed}").Select(s => (double)s)];
            int[] testLabels = [.. testRows.Select(i => labels[i])];
            double threshold = trained.Calibration.Threshold;
            double falsePositiveRate = (double)Enumerable.Range(0, scores.Length).Count(i => testLabels[i] == 0 && scores[i] > threshold) /
                Math.Max(1, testLabels.Count(l => l == 0));
            var result = new SeedResult(seed, DetectionMetrics.Auroc(scores, testLabels), DetectionMetrics.AveragePrecision(scores, testLabels),
                falsePositiveRate, trained, clock.Elapsed);
            results.Add(result);
            onSeed?.Invoke(result);
        }

        return results;
    }

    private static float[] Score(TrainedModel trained, FeatureTable table, string source)
    {
        using var bundle = ModelBundle.Load(trained.ToOnnx(), source);
        return bundle.Score(table).Scores;
    }

    private static (IReadOnlyList<string> Header, IReadOnlyList<string>[] Records) ReadAll(string path)
    {
        using var reader = CsvReader.Open(path);
        var records = new List<IReadOnlyList<string>>();
        while (reader.ReadRecord())
            records.Add([.. Enumerable.Range(0, reader.FieldCount).Select(reader.GetString)]);
        return (reader.Header, [.. records]);
    }
}
