using System.Diagnostics;
using System.Globalization;
using AnomalyVae.Features;
using AnomalyVae.Scoring;
using AnomalyVae.Training;
using AnomalyVae.Training.Engine;

namespace AnomalyVae.Cli;

/// <summary>
/// The semi-supervised protocol for labelled tables: per seed, train on a random half of the normal rows and
/// score the other half plus every anomaly through the exported ONNX model; print AUROC and AUPRC per seed
/// and their mean. Lets anyone check detection quality on their own labelled data with default settings.
/// </summary>
internal static class ProtocolBenchmark
{
    public static int Run(string dataPath, string labelColumn, int seeds, VaeTrainingOptions options, TextWriter output)
    {
        var c = CultureInfo.InvariantCulture;
        var spec = Trainer.InferSpec(dataPath);
        if (!spec.Ignore.Contains(labelColumn, StringComparer.Ordinal) && spec.Features.Any(f => f.Name == labelColumn))
            spec = new FeatureSpec(spec.Features.Where(f => f.Name != labelColumn), [.. spec.Ignore, labelColumn]);
        var (header, records) = ReadAll(dataPath);
        var all = FeatureTable.Load(dataPath, FeatureSchema.Fit(spec, header, records), [labelColumn]);
        int[] labels = all.GetLabels(labelColumn);
        int[] normal = [.. Enumerable.Range(0, labels.Length).Where(i => labels[i] == 0)];
        int[] anomalies = [.. Enumerable.Range(0, labels.Length).Where(i => labels[i] == 1)];
        if (normal.Length < 4 || anomalies.Length == 0)
            throw new CliException($"the protocol needs normal rows and anomalies in '{labelColumn}'; found {normal.Length} and {anomalies.Length}.");
        output.WriteLine($"{Path.GetFileName(dataPath)}: {labels.Length} rows, {anomalies.Length} anomalies, {all.FeatureCount} features; train on half the normal rows, test on the rest + all anomalies");

        var aurocs = new List<double>();
        var auprcs = new List<double>();
        for (int seed = 0; seed < seeds; seed++)
        {
            var clock = Stopwatch.StartNew();
            var shuffled = (int[])normal.Clone();
            var rng = new DeterministicRandom((ulong)seed, 0xB0C0);
            rng.Shuffle(shuffled);
            int half = shuffled.Length / 2;
            int[] trainRows = [.. shuffled[..half].Order()];
            int[] testRows = [.. shuffled[half..], .. anomalies];
            // Fit standardization and vocabularies on the training half only, as a user would; the model then
            // scores raw test rows with that schema.
            var schema = FeatureSchema.Fit(spec, header, [.. trainRows.Select(i => records[i])]);
            var table = FeatureTable.Load(dataPath, schema);
            var trained = Trainer.Train(table.Select(trainRows), options with { Seed = seed });
            using var bundle = ModelBundle.Load(trained.ToOnnx(), $"seed {seed}");
            var testTable = table.Select(testRows);
            var scores = bundle.Score(testTable).Scores.Select(s => (double)s).ToArray();
            int[] testLabels = [.. testRows.Select(i => labels[i])];
            double auroc = DetectionMetrics.Auroc(scores, testLabels), auprc = DetectionMetrics.AveragePrecision(scores, testLabels);
            aurocs.Add(auroc);
            auprcs.Add(auprc);
            output.WriteLine(string.Create(c, $"seed {seed}: AUROC {auroc:F4}  AUPRC {auprc:F4}  ({trained.Summary.Epochs} epochs, best {trained.Summary.BestEpoch}, {clock.Elapsed.TotalSeconds:F1} s)"));
        }
        output.WriteLine(string.Create(c, $"mean AUROC {aurocs.Average():F4} (min {aurocs.Min():F4})  mean AUPRC {auprcs.Average():F4}"));
        return 0;
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
