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
    public byte[] ToOnnx() => VaeOnnxExport.ToBytes(Result.Model, Schema, Calibration, Summary);

    public void Save(string path) => VaeOnnxExport.Save(path, Result.Model, Schema, Calibration, Summary);
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
        var result = VaeTrainer.Train(dataset, options, progress, cancellationToken);

        // Calibrate on rows the weights never saw; without a validation split, fall back to all rows (optimistic).
        int[] held = result.ValidationIndices.Count > 0 ? [.. result.ValidationIndices] : [.. Enumerable.Range(0, table.RowCount)];
        var heldTable = table.Select(held);
        var calibrationScores = ScoreRows(result.Model, heldTable, latentMeans: null, result.Options.Threads ?? 1);
        var calibration = Calibration.Fit(calibrationScores, targetFalsePositiveRate);

        int sampleRows = Math.Min(LatentSampleRows, table.RowCount);
        var sample = table.Select([.. Enumerable.Range(0, sampleRows)]);
        var latent = new float[sampleRows * result.Model.LatentSize];
        ScoreRows(result.Model, sample, latent, result.Options.Threads ?? 1);

        var best = result.History[result.BestEpoch - 1];
        var resolved = result.Options;
        var summary = new ModelTrainingSummary
        {
            Rows = table.RowCount,
            TrainingRows = table.RowCount - result.ValidationIndices.Count,
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
        return new TrainedModel(result, table.Schema, calibration, summary, calibrationScores, latent, clock.Elapsed);
    }

    /// <summary>The engine's view of the fitted features.</summary>
    public static VaeFeature[] EngineFeatures(FeatureSchema schema) =>
        [.. schema.Features.Select(f => f.Kind == FeatureKind.Categorical ? VaeFeature.Categorical(f.Cardinality) : new VaeFeature(f.Kind))];

    /// <summary>Scores a table with the C# engine (the reference the ONNX graph reproduces).</summary>
    public static double[] ScoreRows(VaeModel model, FeatureTable table, float[]? latentMeans, int threads)
    {
        var values = table.StandardizedValues();
        var scores = new float[table.RowCount];
        using var scorer = new VaeScorer(model, threads);
        scorer.Score(values, table.Mask, scores, default, latentMeans);
        return [.. scores.Select(s => (double)s)];
    }
}
