using System.CommandLine;
using System.Globalization;
using AnomalyVae.Model;
using AnomalyVae.Training;
using AnomalyVae.Training.Engine;
using AnomalyVae.Training.Report;

namespace AnomalyVae.Cli;

/// <summary><c>spec infer</c> and <c>train</c>.</summary>
internal static class TrainCommands
{
    public static Command Spec()
    {
        var data = new Option<string>("--data") { Description = "CSV file with a header row.", Required = true };
        var output = new Option<string?>("--out") { Description = "Where to write the spec (default: standard output)." };
        var infer = new Command("infer", "Infer a feature spec (JSON) from a CSV file; edit it and pass it to 'train --spec'.") { data, output };
        infer.SetAction(parse =>
        {
            string path = CliRun.ExistingFile(parse.GetValue(data)!, "data file");
            var (header, rows) = SpecInference.ReadSample(path);
            var decisions = SpecInference.Decide(header, rows);
            foreach (var decision in decisions)
            {
                string kind = decision.Kind is { } k ? FeatureSpec.KindName(k) + (decision.Log ? " (log)" : "") : "ignored";
                Console.Error.WriteLine($"  {decision.Column,-24} {kind,-18} {decision.Reason}");
            }
            if (SpecInference.SuggestWindow(decisions) is (string entity, var order))
            {
                Console.Error.WriteLine($"  each '{entity}' has a history: for a windowed model (sensors, KPIs) train with " +
                    $"--entity-column {entity}{(order is null ? "" : $" --order-column {order}")} (docs/concepts.md, Windows)");
            }
            string json = SpecInference.Infer(header, rows).ToJson();
            if (parse.GetValue(output) is { } outPath)
            {
                File.WriteAllText(CliRun.OutputFile(outPath), json);
                Console.Error.WriteLine($"wrote {outPath}");
            }
            else
            {
                Console.WriteLine(json);
            }
            return 0;
        });
        return new Command("spec", "Feature specs: which columns are used and how.") { infer };
    }

    public static Command Train()
    {
        var data = new Option<string>("--data") { Description = "Training CSV (mostly normal records).", Required = true };
        var output = new Option<string>("--out") { Description = "Model file to write (.onnx).", Required = true };
        var spec = new Option<string?>("--spec") { Description = "Feature spec JSON (default: inferred from the data)." };
        var report = new Option<string?>("--report") { Description = "Also write a self-contained HTML training report." };
        var hidden = new Option<string?>("--hidden") { Description = "Hidden layer widths, e.g. 128,64 (default: from the input width)." };
        var latent = new Option<int?>("--latent") { Description = "Latent dimensions (default: about F/3, 2..32)." };
        var beta = new Option<float>("--beta") { Description = "KL weight β.", DefaultValueFactory = _ => new VaeTrainingOptions().Beta };
        var epochs = new Option<int?>("--epochs") { Description = "Maximum epochs (default: from the row count; early stopping applies)." };
        var batch = new Option<int?>("--batch-size") { Description = "Mini-batch rows (default: from the row count)." };
        var lr = new Option<float>("--lr") { Description = "Adam learning rate.", DefaultValueFactory = _ => 1e-3f };
        var seed = new Option<int>("--seed") { Description = "Random seed (same data, seed and threads give an identical model file).", DefaultValueFactory = _ => 42 };
        var threads = new Option<int?>("--threads") { Description = "Training threads (default: cores, at most 8)." };
        var validation = new Option<double>("--validation-fraction") { Description = "Rows held out for early stopping and calibration.", DefaultValueFactory = _ => 0.1 };
        var fpr = new Option<double>("--target-fpr") { Description = "Calibrated false-positive rate on normal data.", DefaultValueFactory = _ => Calibration.DefaultFalsePositiveRate };
        var variance = new Option<NumericVariance>("--variance") { Description = "Numeric heads' variance: PerFeature (one learned value per feature) or PerRow (predicted per record).", DefaultValueFactory = _ => new VaeTrainingOptions().NumericVariance };
        var activation = new Option<Activation>("--activation") { Description = "Hidden-layer activation.", DefaultValueFactory = _ => new VaeTrainingOptions().Activation };
        var samples = new Option<int>("--samples") { Description = "Latent samples L for the reconstruction probability.", DefaultValueFactory = _ => new VaeTrainingOptions().ScoringSamples };
        var ensemble = new Option<int?>("--ensemble") { Description = $"VAEs averaged in the one model file (default {new VaeTrainingOptions().Ensemble}; windowed models train one)." };
        var window = new Option<int?>("--window") { Description = $"Windowed model: W events per window, the last W events of each entity (default with --entity-column: {WindowDefinition.DefaultSteps}, fewer for short series)." };
        var entity = new Option<string?>("--entity-column") { Description = "Windowed model: the column naming each row's entity (machine, KPI); makes the model windowed." };
        var order = new Option<string?>("--order-column") { Description = "Windowed model: the column ordering an entity's rows (number or date/time; default: row order)." };
        var score = CliRun.ScoreOption();
        var quantileMap = CliRun.QuantileMapOption();
        var command = new Command("train", "Fit a VAE on a CSV file and export one self-contained ONNX model.")
        {
            data, output, spec, report, hidden, latent, beta, epochs, batch, lr, seed, threads, validation, fpr, samples, variance, activation,
            ensemble, window, entity, order, score, quantileMap,
        };
        command.SetAction((parse, cancellationToken) =>
        {
            string dataPath = CliRun.ExistingFile(parse.GetValue(data)!, "data file");
            string outPath = CliRun.OutputFile(parse.GetValue(output)!);
            string? reportPath = parse.GetValue(report) is { } r ? CliRun.OutputFile(r) : null;
            double targetFpr = parse.GetValue(fpr);
            if (!(targetFpr > 0 && targetFpr < 0.5))
                throw new CliException($"--target-fpr must be between 0 and 0.5; got {targetFpr}.");
            var options = new VaeTrainingOptions
            {
                Hidden = CliRun.ParseHidden(parse.GetValue(hidden)),
                Latent = parse.GetValue(latent),
                Beta = parse.GetValue(beta),
                Epochs = parse.GetValue(epochs),
                BatchSize = parse.GetValue(batch),
                LearningRate = parse.GetValue(lr),
                Seed = parse.GetValue(seed),
                Threads = parse.GetValue(threads),
                ValidationFraction = parse.GetValue(validation),
                ScoringSamples = parse.GetValue(samples),
                NumericVariance = parse.GetValue(variance),
                Activation = parse.GetValue(activation),
                ScoreFunction = CliRun.ScoreFunctionOf(parse.GetValue(score)),
            };
            if (parse.GetValue(ensemble) is { } k)
            {
                if (k is < 1 or > VaeTrainingOptions.MaxEnsemble)
                    throw new CliException($"--ensemble must be between 1 and {VaeTrainingOptions.MaxEnsemble}; got {k}.");
                options = options with { Ensemble = k };
            }
            var featureSpec = parse.GetValue(spec) is { } specPath ? FeatureSpec.Load(CliRun.ExistingFile(specPath, "spec file")) : null;
            if (featureSpec is null)
                Console.Error.WriteLine("No --spec given: inferring one from the data (see 'anomalyvae spec infer').");
            if (parse.GetValue(quantileMap))
                featureSpec = (featureSpec ?? Trainer.InferSpec(dataPath)).WithQuantileMaps();

            string? entityColumn = parse.GetValue(entity);
            int? steps = parse.GetValue(window);
            if (entityColumn is null && (steps is not null || parse.GetValue(order) is not null))
                throw new CliException("--window and --order-column need --entity-column (whose recent events make the window).");
            if (entityColumn is not null && parse.GetValue(ensemble) is > 1)
                throw new CliException("windowed models train one VAE; --ensemble above 1 applies to per-event models only.");
            if (entityColumn is not null && options.ScoreFunction != ScoreFunction.ReconstructionProbability)
                throw new CliException("windowed models score the reconstruction probability; --score elbo applies to per-event models only.");
            if (steps is { } w && w is < 2 or > WindowDefinition.MaxSteps)
                throw new CliException($"--window must be between 2 and {WindowDefinition.MaxSteps}; got {steps}.");

            using var bar = new EpochProgress(Console.Error);
            var trained = entityColumn is null
                ? Trainer.Train(dataPath, featureSpec, options, targetFpr, bar.Report, cancellationToken)
                : Trainer.TrainWindowed(dataPath, featureSpec, entityColumn, parse.GetValue(order), steps, options, targetFpr, bar.Report, cancellationToken);
            bar.Finish();
            trained.Save(outPath);

            var s = trained.Summary;
            Console.WriteLine($"model      {outPath}");
            Console.WriteLine($"features   {trained.Schema.Count} ({Describe(trained.Schema)})");
            if (trained.Window is { } wd)
                Console.WriteLine($"window     {wd.Steps} events per '{wd.EntityField}', ordered by {(wd.OrderField is null ? "row order" : $"'{wd.OrderField}'")}");
            Console.WriteLine($"rows       {s.Rows} ({s.TrainingRows} train, {s.ValidationRows} held out)");
            Console.WriteLine($"network    hidden {string.Join('-', s.Hidden)}, latent {s.Latent}, L={s.ScoringSamples}, batch {s.BatchSize}, threads {s.Threads}{(s.Ensemble is { } members ? $", ensemble of {members}" : "")}{(trained.Result.Model.ScoreFunction == ScoreFunction.NegativeElbo ? ", score -ELBO" : "")}");
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"training   {s.Epochs} epochs (best {s.BestEpoch}), validation loss {s.ValidationLoss:F4}{(s.MemberValidationLoss is { } losses ? $" (members {string.Join(", ", losses.Select(l => l.ToString("F4", CultureInfo.InvariantCulture)))})" : "")}, {trained.Elapsed.TotalSeconds:F1} s"));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"threshold  {trained.Calibration.Threshold:F4} (target false-positive rate {trained.Calibration.TargetFalsePositiveRate:P2})"));
            if (reportPath is not null)
            {
                Report(trained, dataPath).Save(reportPath);
                Console.WriteLine($"report     {reportPath}");
            }
            return Task.FromResult(0);
        });
        return command;
    }

    private static TrainingReport Report(TrainedModel trained, string dataPath)
    {
        var s = trained.Summary;
        return new TrainingReport
        {
            Title = $"AnomalyVae training report: {Path.GetFileName(dataPath)}",
            Summary =
            [
                new("rows", $"{s.Rows} ({s.TrainingRows} train, {s.ValidationRows} held out)"),
                new("features", $"{trained.Schema.Count} ({Describe(trained.Schema)})"),
                new("network", $"hidden {string.Join('-', s.Hidden)}, latent {s.Latent}, β {s.Beta}, L {s.ScoringSamples}{(s.Ensemble is { } members ? $", ensemble of {members} (losses and latent plot: member 0)" : "")}"),
                new("training", $"{s.Epochs} epochs, best {s.BestEpoch}, {trained.Elapsed.TotalSeconds:F1} s, seed {s.Seed}, {s.Threads} threads"),
                new("threshold", string.Create(CultureInfo.InvariantCulture, $"{trained.Calibration.Threshold:F4} at target FPR {trained.Calibration.TargetFalsePositiveRate:P2}")),
                new("created", s.CreatedAt.ToString("u", CultureInfo.InvariantCulture)),
            ],
            Losses = [.. trained.Result.History.Select(h => new EpochLoss(h.Epoch, h.TrainLoss, h.ValidationLoss ?? double.NaN))],
            CalibrationScores = trained.CalibrationScores,
            Threshold = trained.Calibration.Threshold,
            LatentMeans = trained.LatentMeans,
            LatentSize = trained.Result.Model.LatentSize,
        };
    }

    private static string Describe(FeatureSchema schema) =>
        string.Join(", ", schema.Features.GroupBy(f => f.Kind).Select(g => $"{g.Count()} {FeatureSpec.KindName(g.Key)}"))
        + (schema.Features.Count(f => f.QuantileMap is not null) is > 0 and var mapped ? $"; {mapped} quantile-mapped" : "");
}
