using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using AnomalyVae.Inference;
using AnomalyVae.Model;

namespace AnomalyVae.Cli;

/// <summary><c>score</c>, <c>evaluate</c> and <c>encode</c>: batch work through ONNX Runtime.</summary>
internal static class ScoreCommands
{
    public static Option<string> ModelOption() => new("--model") { Description = "AnomalyVae model file (.onnx).", Required = true };

    public static Option<string> DataOption() => new("--data") { Description = "CSV file with the model's feature columns.", Required = true };

    public static Option<string> OutOption(string what) => new("--out") { Description = what, Required = true };

    public static Command Score()
    {
        var model = ModelOption();
        var data = DataOption();
        var output = OutOption("Output CSV: one row per input row, same order.");
        var top = new Option<int>("--top") { Description = "Top contributing features per row.", DefaultValueFactory = _ => 3 };
        var keep = new Option<string?>("--keep") { Description = "Input columns to copy into the output, e.g. id,label." };
        var command = new Command("score", "Score every row of a CSV file: score (higher = more anomalous), p-value, flagged, top features.")
        {
            model, data, output, top, keep,
        };
        command.SetAction((parse, cancellationToken) =>
        {
            using var bundle = LoadModel(parse.GetValue(model)!);
            string[] keepColumns = parse.GetValue(keep)?.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries) ?? [];
            int topCount = Math.Clamp(parse.GetValue(top), 0, bundle.Schema.Count);
            var table = FeatureTable.Load(CliRun.ExistingFile(parse.GetValue(data)!, "data file"), bundle.Schema, WithWindow(bundle, keepColumns), cancellationToken);
            var scores = bundle.Score(table, cancellationToken: cancellationToken);
            string outPath = CliRun.OutputFile(parse.GetValue(output)!);
            using var writer = CsvWriter.Create(outPath);
            var header = new List<string> { "row" };
            header.AddRange(keepColumns);
            header.AddRange(["score", "p_value", "flagged"]);
            for (int t = 1; t <= topCount; t++)
                header.AddRange([$"top{t}_feature", $"top{t}_score"]);
            writer.WriteRecord(header);
            var calibration = bundle.Calibration;
            int flagged = 0;
            var kept = keepColumns.Select(table.GetExtraColumn).ToArray();
            for (int r = 0; r < table.RowCount; r++)
            {
                double score = scores.Scores[r];
                bool isAnomalous = calibration.IsAnomalous(score);
                flagged += isAnomalous ? 1 : 0;
                writer.WriteField(r + 1);
                foreach (var column in kept)
                    writer.WriteField(column[r]);
                writer.WriteField(score);
                writer.WriteField(calibration.PValue(score));
                writer.WriteField(isAnomalous ? "1" : "0");
                foreach (int j in scores.TopFeatures(r, topCount))
                {
                    writer.WriteField(bundle.Schema.Features[j].Name);
                    writer.WriteField(scores.FeatureScores[r * scores.Features + j]);
                }
                writer.EndRecord();
            }
            Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"scored {table.RowCount} rows, flagged {flagged} ({(table.RowCount == 0 ? 0 : (double)flagged / table.RowCount):P2}) at threshold {calibration.Threshold:F4}; wrote {outPath}"));
            return Task.FromResult(0);
        });
        return command;
    }

    public static Command Evaluate()
    {
        var model = ModelOption();
        var data = DataOption();
        var label = new Option<string>("--label-column") { Description = "Column with the true label (1/true = anomaly).", DefaultValueFactory = _ => "label" };
        var kind = new Option<string?>("--kind-column") { Description = "Column naming each anomaly's kind (e.g. anomaly_kind): also print caught/injected per kind." };
        var format = new Option<string>("--format") { Description = "Output format.", DefaultValueFactory = _ => "table" };
        format.AcceptOnlyFromAmong("table", "json");
        var command = new Command("evaluate", "Detection quality on labelled data: AUROC, AUPRC, and precision/recall/F1 at the calibrated threshold.")
        {
            model, data, label, kind, format,
        };
        command.SetAction((parse, cancellationToken) =>
        {
            using var bundle = LoadModel(parse.GetValue(model)!);
            string labelColumn = parse.GetValue(label)!;
            string? kindColumn = parse.GetValue(kind);
            string[] extra = kindColumn is null ? [labelColumn] : [labelColumn, kindColumn];
            var table = FeatureTable.Load(CliRun.ExistingFile(parse.GetValue(data)!, "data file"), bundle.Schema, WithWindow(bundle, extra), cancellationToken);
            int[] labels = table.GetLabels(labelColumn);
            int anomalies = labels.Count(l => l == 1);
            if (anomalies == 0 || anomalies == labels.Length)
                throw new CliException($"evaluation needs both classes in '{labelColumn}'; found {anomalies} anomalies in {labels.Length} rows.");
            var scores = bundle.Score(table, cancellationToken: cancellationToken).Scores.Select(s => (double)s).ToArray();
            var at = DetectionMetrics.AtThreshold(scores, labels, bundle.Calibration.Threshold);
            var result = new EvaluationResult(table.RowCount, anomalies, DetectionMetrics.Auroc(scores, labels), DetectionMetrics.AveragePrecision(scores, labels),
                bundle.Calibration.Threshold, at.Precision, at.Recall, at.F1, at.FalsePositiveRate, at.TruePositives + at.FalsePositives,
                kindColumn is null ? null : DetectionMetrics.CaughtByKind(scores, labels, table.GetExtraColumn(kindColumn), bundle.Calibration.Threshold));
            if (parse.GetValue(format) == "json")
            {
                Console.WriteLine(JsonSerializer.Serialize(result, new JsonSerializerOptions { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower, WriteIndented = true }));
            }
            else
            {
                var c = CultureInfo.InvariantCulture;
                Console.WriteLine(string.Create(c, $"rows        {result.Rows} ({result.Anomalies} anomalies)"));
                Console.WriteLine(string.Create(c, $"AUROC       {result.Auroc:F4}"));
                Console.WriteLine(string.Create(c, $"AUPRC       {result.Auprc:F4}"));
                Console.WriteLine(string.Create(c, $"threshold   {result.Threshold:F4}  (flagged {result.Flagged})"));
                Console.WriteLine(string.Create(c, $"precision   {result.Precision:F4}"));
                Console.WriteLine(string.Create(c, $"recall      {result.Recall:F4}"));
                Console.WriteLine(string.Create(c, $"F1          {result.F1:F4}"));
                Console.WriteLine(string.Create(c, $"FPR         {result.FalsePositiveRate:F4}"));
                foreach (var k in result.Kinds ?? [])
                    Console.WriteLine(string.Create(c, $"kind        {k.Kind} {k.Caught}/{k.Injected}"));
            }
            return Task.FromResult(0);
        });
        return command;
    }

    public static Command Encode()
    {
        var model = ModelOption();
        var data = DataOption();
        var output = OutOption("Output CSV: row, then the latent mean z0..z(Z-1).");
        var command = new Command("encode", "Encode rows to their latent means (the VAE's q(z|x)).") { model, data, output };
        command.SetAction((parse, cancellationToken) =>
        {
            using var bundle = LoadModel(parse.GetValue(model)!);
            var table = FeatureTable.Load(CliRun.ExistingFile(parse.GetValue(data)!, "data file"), bundle.Schema, WithWindow(bundle, []), cancellationToken);
            var scores = bundle.Score(table, cancellationToken: cancellationToken);
            string outPath = CliRun.OutputFile(parse.GetValue(output)!);
            using var writer = CsvWriter.Create(outPath);
            writer.WriteRecord(["row", .. Enumerable.Range(0, bundle.LatentSize).Select(k => $"z{k}")]);
            for (int r = 0; r < table.RowCount; r++)
            {
                writer.WriteField(r + 1);
                for (int k = 0; k < bundle.LatentSize; k++)
                    writer.WriteField(scores.LatentMeans[r * bundle.LatentSize + k]);
                writer.EndRecord();
            }
            Console.Error.WriteLine($"encoded {table.RowCount} rows into {bundle.LatentSize} latent dimensions; wrote {outPath}");
            return Task.FromResult(0);
        });
        return command;
    }

    /// <summary>The extra columns to load: <paramref name="columns"/> plus a windowed model's entity and order columns.</summary>
    private static string[] WithWindow(ModelBundle bundle, IEnumerable<string> columns) =>
        [.. columns.Concat(bundle.Window?.Columns ?? []).Distinct(StringComparer.Ordinal)];

    public static ModelBundle LoadModel(string path) => ModelBundle.Load(CliRun.ExistingFile(path, "model file"));

    private sealed record EvaluationResult(int Rows, int Anomalies, double Auroc, double Auprc, double Threshold,
        double Precision, double Recall, double F1, double FalsePositiveRate, long Flagged, IReadOnlyList<KindCatch>? Kinds);
}
