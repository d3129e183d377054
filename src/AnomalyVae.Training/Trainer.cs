using System.Diagnostics;
using AnomalyVae.Model;
using AnomalyVae.Training.Engine;
using AnomalyVae.Training.Export;

namespace AnomalyVae.Training;

/// <summary>What one training run produced, ready to be exported and reported. <see cref="Elapsed"/> stays out of the file so identical runs give identical bytes.</summary>
public sealed record TrainedModel(
    VaeTrainingResult Result,
    FeatureSchema Schema,
    Calibration Calibration,
    ModelTrainingSummary Summary,
    double[] CalibrationScores,
    float[] LatentMeans,
    TimeSpan Elapsed)
{
    /// <summary>The window of a windowed model (null: each event scored alone).</summary>
    public WindowDefinition? Window { get; init; }

    /// <summary>Members 1..K−1 of an ensemble (<see cref="VaeEnsemble"/>); empty for one VAE. <see cref="Result"/> is member 0.</summary>
    public IReadOnlyList<VaeTrainingResult> OtherMembers { get; init; } = [];

    /// <summary>Every VAE of the model, member 0 first.</summary>
    public IReadOnlyList<VaeModel> Models => [Result.Model, .. OtherMembers.Select(m => m.Model)];

    public byte[] ToOnnx() => VaeOnnxExport.ToBytes(Models, Schema, Calibration, Summary, Window);

    public void Save(string path) => VaeOnnxExport.Save(path, Models, Schema, Calibration, Summary, Window);
}

/// <summary>
/// The offline pipeline: CSV → feature spec (given or inferred) → fitted schema → standardized table → VAE
/// training → calibration on the held-out validation rows (never trained on) → <see cref="TrainedModel"/>.
/// </summary>
public static class Trainer
{
    /// <summary>Latent means kept for the report's scatter plot.</summary>
    private const int LatentSampleRows = 2000;

    public static TrainedModel Train(
        string dataPath,
        FeatureSpec? spec,
        VaeTrainingOptions options,
        double targetFalsePositiveRate = Calibration.DefaultFalsePositiveRate,
        Action<VaeEpochProgress>? progress = null,
        CancellationToken cancellationToken = default)
    {
        spec ??= InferSpec(dataPath);
        var schema = FeatureSchema.Fit(spec, dataPath, cancellationToken);
        var table = FeatureTable.Load(dataPath, schema, cancellationToken: cancellationToken);
        return Train(table, options, targetFalsePositiveRate, progress, dataPath, cancellationToken);
    }

    /// <summary>
    /// Trains a windowed model: each row's window holds the last W rows of its entity (ordered by
    /// <paramref name="orderColumn"/>, else row order), the VAE fits whole windows, and a row's score is its
    /// window's last step. <paramref name="steps"/> null: <see cref="WindowDefinition.DefaultStepsFor"/>.
    /// The entity and order columns are never features (an inferred spec leaves them out).
    /// </summary>
    public static TrainedModel TrainWindowed(
        string dataPath,
        FeatureSpec? spec,
        string entityColumn,
        string? orderColumn,
        int? steps,
        VaeTrainingOptions options,
        double targetFalsePositiveRate = Calibration.DefaultFalsePositiveRate,
        Action<VaeEpochProgress>? progress = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(entityColumn);
        string[] windowColumns = orderColumn is null ? [entityColumn] : [entityColumn, orderColumn];
        spec ??= InferSpec(dataPath);
        var used = spec.Features.Where(f => windowColumns.Contains(f.Name, StringComparer.Ordinal)).Select(f => f.Name).ToList();
        if (used.Count > 0)
        {
            // The entity and order name a row's place in a sequence; as features they would only memorize it.
            spec = new FeatureSpec(spec.Features.Where(f => !used.Contains(f.Name, StringComparer.Ordinal)), spec.Ignore.Concat(used));
        }
        var schema = FeatureSchema.Fit(spec, dataPath, cancellationToken);
        var table = FeatureTable.Load(dataPath, schema, windowColumns, cancellationToken);
        int w = steps ?? WindowDefinition.DefaultStepsFor(table.GetExtraColumn(entityColumn));
        var window = new WindowDefinition(w, entityColumn, orderColumn) { MaskFlaggedHistory = true };
        return TrainWindowed(new FeatureWindows(table, window.Validate()), options, targetFalsePositiveRate, progress, dataPath, cancellationToken);
    }

    /// <summary>Trains on the windows of an in-memory table (see the overload on a CSV file).</summary>
    public static TrainedModel TrainWindowed(
        FeatureWindows windows,
        VaeTrainingOptions options,
        double targetFalsePositiveRate = Calibration.DefaultFalsePositiveRate,
        Action<VaeEpochProgress>? progress = null,
        string? dataFile = null,
        CancellationToken cancellationToken = default) =>
        TrainWindowed(windows, null, options, targetFalsePositiveRate, progress, dataFile, cancellationToken);

    /// <summary>
    /// Trains on the windows of <paramref name="windowRows"/> only; the table's other rows are history that those
    /// windows hold (retraining: each sample row's window is laid out as its own entity). The windows are
    /// independent, so the engine's random split holds out some of them to calibrate on.
    /// </summary>
    public static TrainedModel TrainWindowed(
        FeatureWindows windows,
        IReadOnlyList<int>? windowRows,
        VaeTrainingOptions options,
        double targetFalsePositiveRate = Calibration.DefaultFalsePositiveRate,
        Action<VaeEpochProgress>? progress = null,
        string? dataFile = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(windows);
        ArgumentNullException.ThrowIfNull(options);
        // Windows score the reconstruction probability: the −ELBO's KL would cover the whole window's code, history
        // included, and was never measured on sensor streams.
        if (options.ScoreFunction != ScoreFunction.ReconstructionProbability)
            throw new ArgumentException("windowed models score the reconstruction probability; the -ELBO applies to per-event models only.", nameof(options));
        int rows = windowRows?.Count ?? windows.RowCount;
        if (rows < 2)
            throw new ArgumentException($"Training needs at least 2 rows; the data has {rows}.");
        var clock = Stopwatch.StartNew();
        var schema = windows.Table.Schema;
        // Hold out blocks of each entity's events, not a random share: a random held-out event would sit inside
        // the training windows of its successors, and calibration on it would be optimistic (FeatureWindows.Split).
        var (trainRows, validationRows) = windowRows is not null
            ? ([.. windowRows], [])
            : options.ValidationRowIndices is null
            ? windows.Split(options.ValidationFraction)
            : ([.. Enumerable.Range(0, rows).Except(options.ValidationRowIndices)], [.. options.ValidationRowIndices]);
        int[] used = [.. trainRows.Concat(validationRows).Order()];
        var position = new Dictionary<int, int>(used.Length);
        for (int i = 0; i < used.Length; i++)
            position[used[i]] = i;
        var (values, mask) = windows.Standardized(used);
        VaeFeature[] stepFeatures = EngineFeatures(schema);
        var features = new VaeFeature[windows.Width];
        for (int step = 0; step < windows.Steps; step++)
            stepFeatures.CopyTo(features, step * stepFeatures.Length);
        // Donut's missing-data injection, one window step at a time: the model meets the gaps that masking
        // flagged history steps makes (WindowDefinition.DefaultMissingInjection).
        options = options with
        {
            MissingInjectionRate = options.MissingInjectionRate ?? WindowDefinition.DefaultMissingInjection,
            MissingInjectionGroup = schema.Count,
        };
        // Series too short for a held-out block fall back to the engine's random split.
        var engineOptions = validationRows.Length > 0 ? options with { ValidationRowIndices = [.. validationRows.Select(r => position[r])] } : options;
        var result = VaeTrainer.Train(new VaeDataset(features, values, mask, used.Length), engineOptions, progress, cancellationToken);

        // Calibrate on the held-out windows (without any, on every window: optimistic).
        int[] held = result.ValidationIndices.Count > 0 ? [.. result.ValidationIndices.Select(i => used[i])] : used;
        int threads = result.Options.Threads ?? 1;
        int scoredFrom = windows.Width - schema.Count;
        var (heldValues, heldMask) = windows.Standardized(held);
        var calibrationScores = ScoreWindows(result.Model, heldValues, heldMask, held.Length, scoredFrom, null, threads);
        var calibration = Calibration.Fit(calibrationScores, targetFalsePositiveRate);

        int[] latentRows = windowRows is null
            ? [.. Enumerable.Range(0, Math.Min(LatentSampleRows, windows.RowCount))]
            : used[..Math.Min(LatentSampleRows, used.Length)];
        int sampleRows = latentRows.Length;
        var (sampleValues, sampleMask) = windows.Standardized(latentRows);
        var latent = new float[sampleRows * result.Model.LatentSize];
        ScoreWindows(result.Model, sampleValues, sampleMask, sampleRows, scoredFrom, latent, threads);
        var summary = Summarize(result, used.Length, dataFile);
        return new TrainedModel(result, schema, calibration, summary, calibrationScores, latent, clock.Elapsed) { Window = windows.Window };
    }

    private static double[] ScoreWindows(VaeModel model, float[] values, float[] mask, int rows, int scoredFrom, float[]? latentMeans, int threads)
    {
        var scores = new float[rows];
        using var scorer = new VaeScorer(model, threads, scoredFrom);
        scorer.Score(values, mask, scores, default, latentMeans);
        return [.. scores.Select(s => (double)s)];
    }

    public static FeatureSpec InferSpec(string dataPath)
    {
        var (header, rows) = SpecInference.ReadSample(dataPath);
        return SpecInference.Infer(header, rows);
    }

    public static TrainedModel Train(
        FeatureTable table,
        VaeTrainingOptions options,
        double targetFalsePositiveRate = Calibration.DefaultFalsePositiveRate,
        Action<VaeEpochProgress>? progress = null,
        string? dataFile = null,
        CancellationToken cancellationToken = default)
    {
        if (table.RowCount < 2)
            throw new ArgumentException($"Training needs at least 2 rows; the data has {table.RowCount}.");
        var clock = Stopwatch.StartNew();
        var dataset = new VaeDataset(EngineFeatures(table.Schema), table.StandardizedValues(), table.Mask, table.RowCount);
        // K VAEs sharing member 0's validation split (options.Ensemble; docs/quality.md, "Ensemble").
        var members = VaeEnsemble.Train(dataset, options, progress, cancellationToken);
        var result = members[0];
        IReadOnlyList<VaeModel> models = [.. members.Select(m => m.Model)];

        // Calibrate the combined score on rows no member's weights saw; without a validation split, fall back to all rows (optimistic).
        int[] held = result.ValidationIndices.Count > 0 ? [.. result.ValidationIndices] : [.. Enumerable.Range(0, table.RowCount)];
        var heldTable = table.Select(held);
        var calibrationScores = ScoreRows(models, heldTable, latentMeans: null, result.Options.Threads ?? 1);
        var calibration = Calibration.Fit(calibrationScores, targetFalsePositiveRate);

        int sampleRows = Math.Min(LatentSampleRows, table.RowCount);
        var sample = table.Select([.. Enumerable.Range(0, sampleRows)]);
        var latent = new float[sampleRows * result.Model.LatentSize];
        ScoreRows(result.Model, sample, latent, result.Options.Threads ?? 1);

        var summary = Summarize(result, table.RowCount, dataFile);
        if (members.Count > 1)
        {
            summary = summary with
            {
                Ensemble = members.Count,
                MemberValidationLoss = [.. members.Select(m => m.History[m.BestEpoch - 1].ValidationLoss ?? double.NaN)],
            };
        }
        return new TrainedModel(result, table.Schema, calibration, summary, calibrationScores, latent, clock.Elapsed) { OtherMembers = [.. members.Skip(1)] };
    }

    private static ModelTrainingSummary Summarize(VaeTrainingResult result, int rows, string? dataFile)
    {
        var best = result.History[result.BestEpoch - 1];
        var resolved = result.Options;
        return new ModelTrainingSummary
        {
            Rows = rows,
            TrainingRows = rows - result.ValidationIndices.Count,
            ValidationRows = result.ValidationIndices.Count,
            Epochs = result.History.Count,
            BestEpoch = result.BestEpoch,
            TrainLoss = best.TrainLoss,
            ValidationLoss = best.ValidationLoss ?? double.NaN,
            Seed = resolved.Seed,
            Threads = resolved.Threads ?? 1,
            Hidden = resolved.Hidden ?? [],
            Latent = resolved.Latent ?? result.Model.LatentSize,
            Beta = resolved.Beta,
            BatchSize = resolved.BatchSize ?? 0,
            LearningRate = resolved.LearningRate,
            ScoringSamples = result.Model.NoiseSamples,
            TrainLossPerEpoch = [.. result.History.Select(h => h.TrainLoss)],
            ValidationLossPerEpoch = [.. result.History.Select(h => h.ValidationLoss ?? double.NaN)],
            DataFile = dataFile is null ? null : Path.GetFileName(dataFile),
            CreatedAt = ModelTrainingSummary.Now(),
        };
    }

    /// <summary>The engine's view of the fitted features.</summary>
    public static VaeFeature[] EngineFeatures(FeatureSchema schema) =>
        [.. schema.Features.Select(f => f.Kind == FeatureKind.Categorical ? VaeFeature.Categorical(f.Cardinality) : new VaeFeature(f.Kind))];

    /// <summary>Scores a table with the C# engine (the reference the ONNX graph reproduces).</summary>
    public static double[] ScoreRows(VaeModel model, FeatureTable table, float[]? latentMeans, int threads) =>
        ScoreRows([model], table, latentMeans, threads);

    /// <summary>Scores a table with an ensemble's members as the exported graph combines them (<see cref="VaeEnsemble"/>).</summary>
    public static double[] ScoreRows(IReadOnlyList<VaeModel> members, FeatureTable table, float[]? latentMeans, int threads)
    {
        ArgumentNullException.ThrowIfNull(table);
        var values = table.StandardizedValues();
        var scores = new float[table.RowCount];
        VaeEnsemble.Score(members, values, table.Mask, scores, default, latentMeans, threads);
        return [.. scores.Select(s => (double)s)];
    }
}
