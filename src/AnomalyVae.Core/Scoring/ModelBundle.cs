using System.Text.Json;
using AnomalyVae.Features;
using AnomalyVae.Onnx;
using Microsoft.Extensions.Logging;
using Microsoft.ML.OnnxRuntime;

namespace AnomalyVae.Scoring;

/// <summary>A file that is not a usable AnomalyVae model: unreadable, not ONNX, or missing our metadata.</summary>
public sealed class ModelFormatException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// An AnomalyVae model file loaded for scoring: the ONNX Runtime session plus what its metadata carries (the
/// fitted feature schema, the calibration, the version). One file is the whole model; nothing else is needed.
/// </summary>
public sealed class ModelBundle : IDisposable
{
    /// <summary>metadata_props keys written by the trainer and read here.</summary>
    public const string FormatKey = "anomalyvae.format";
    public const string FeaturesKey = "anomalyvae.features";
    public const string CalibrationKey = "anomalyvae.calibration";
    public const string TrainingKey = "anomalyvae.training";
    public const string ArchitectureKey = "anomalyvae.architecture";
    public const string VersionKey = "anomalyvae.model_version";
    public const string CreatedAtKey = "anomalyvae.created_at";
    public const string FormatVersion = "1";

    /// <summary>Graph input and output names.</summary>
    public const string InputX = "x";
    public const string InputMask = "mask";
    public const string OutputScore = "score";
    public const string OutputFeatureScores = "feature_scores";
    public const string OutputLatentMean = "latent_mean";

    private ModelBundle(string source, OnnxSession session, FeatureSchema schema, Calibration calibration, string version,
        DateTimeOffset createdAt, string training, int latentSize)
    {
        Source = source;
        Session = session;
        Schema = schema;
        Calibration = calibration;
        Version = version;
        CreatedAt = createdAt;
        TrainingSummaryJson = training;
        LatentSize = latentSize;
    }

    public string Source { get; }

    public OnnxSession Session { get; }

    public FeatureSchema Schema { get; }

    public Calibration Calibration { get; }

    /// <summary>Content-derived model version (stable for identical models).</summary>
    public string Version { get; }

    public DateTimeOffset CreatedAt { get; }

    /// <summary>The training summary as written by the trainer (rows, epochs, losses, hyper-parameters).</summary>
    public string TrainingSummaryJson { get; }

    public int LatentSize { get; }

    /// <summary>Loads and validates a model file; any problem becomes a <see cref="ModelFormatException"/> naming the file.</summary>
    public static ModelBundle Load(string path, OnnxSessionOptions? options = null, ILogger? logger = null)
    {
        if (!File.Exists(path))
            throw new ModelFormatException($"Model file '{path}' does not exist.");
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ModelFormatException($"Model file '{path}' cannot be read: {e.Message}", e);
        }
        return Load(bytes, path, options, logger);
    }

    /// <summary>Loads a model held in memory (e.g. from the registry); <paramref name="source"/> names it in errors.</summary>
    public static ModelBundle Load(ReadOnlySpan<byte> model, string source, OnnxSessionOptions? options = null, ILogger? logger = null)
    {
        OnnxSession session;
        try
        {
            session = OnnxSession.FromBytes(model, options, logger);
        }
        catch (OnnxRuntimeException e)
        {
            throw new ModelFormatException($"'{source}' is not a valid ONNX model: {e.Message}", e);
        }
        try
        {
            var custom = session.Metadata.Custom;
            if (!custom.TryGetValue(FormatKey, out var format))
                throw new ModelFormatException($"'{source}' is an ONNX model but not an AnomalyVae model (no '{FormatKey}' metadata).");
            if (format != FormatVersion)
                throw new ModelFormatException($"'{source}' has AnomalyVae model format {format}; this build reads format {FormatVersion}.");
            var schema = FeatureSchema.FromJson(Require(custom, FeaturesKey, source));
            var calibration = Calibration.FromJson(Require(custom, CalibrationKey, source));
            string version = Require(custom, VersionKey, source);
            var createdAt = DateTimeOffset.Parse(Require(custom, CreatedAtKey, source), System.Globalization.CultureInfo.InvariantCulture);
            CheckTensor(session.Inputs, InputX, schema.Count, source);
            CheckTensor(session.Inputs, InputMask, schema.Count, source);
            CheckTensor(session.Outputs, OutputScore, 1, source);
            CheckTensor(session.Outputs, OutputFeatureScores, schema.Count, source);
            var latent = session.Outputs.FirstOrDefault(o => o.Name == OutputLatentMean)
                ?? throw new ModelFormatException($"'{source}' has no '{OutputLatentMean}' output.");
            int latentSize = (int)(latent.ElementsPerRow ?? throw new ModelFormatException($"'{source}': latent size is not fixed."));
            return new ModelBundle(source, session, schema, calibration, version, createdAt,
                custom.TryGetValue(TrainingKey, out var training) ? training : "{}", latentSize);
        }
        catch (Exception e) when (e is FormatException or JsonException or FeatureSpecException or ArgumentException)
        {
            session.Dispose();
            throw new ModelFormatException($"'{source}' has unreadable AnomalyVae metadata: {e.Message}", e);
        }
        catch
        {
            session.Dispose();
            throw;
        }
    }

    /// <summary>A scorer with its own buffers for batches of up to <paramref name="maxRows"/> rows (one per thread).</summary>
    public ModelScorer CreateScorer(int maxRows) => new(this, maxRows);

    /// <summary>Scores a whole in-memory table in batches of <paramref name="batchRows"/> (CLI and tests).</summary>
    public TableScores Score(FeatureTable table, int batchRows = 1024, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(table);
        if (table.FeatureCount != Schema.Count)
            throw new ArgumentException($"The table has {table.FeatureCount} features; the model expects {Schema.Count}.");
        int rows = table.RowCount, f = Schema.Count, z = LatentSize;
        var result = new TableScores(new float[rows], new float[rows * f], new float[rows * z], f, z);
        if (rows == 0)
            return result;
        using var scorer = CreateScorer(Math.Min(batchRows, rows));
        for (int first = 0; first < rows; first += scorer.MaxRows)
        {
            cancellationToken.ThrowIfCancellationRequested();
            int n = Math.Min(scorer.MaxRows, rows - first);
            table.X.AsSpan(first * f, n * f).CopyTo(scorer.X);
            table.Mask.AsSpan(first * f, n * f).CopyTo(scorer.Mask);
            scorer.Run(n);
            scorer.Scores(n).CopyTo(result.Scores.AsSpan(first));
            scorer.FeatureScores(n).CopyTo(result.FeatureScores.AsSpan(first * f));
            scorer.LatentMeans(n).CopyTo(result.LatentMeans.AsSpan(first * z));
        }
        return result;
    }

    public void Dispose() => Session.Dispose();

    private static string Require(IReadOnlyDictionary<string, string> custom, string key, string source) =>
        custom.TryGetValue(key, out var value) ? value : throw new ModelFormatException($"'{source}' lacks the '{key}' metadata.");

    private static void CheckTensor(IReadOnlyList<OnnxTensorInfo> tensors, string name, long width, string source)
    {
        var tensor = tensors.FirstOrDefault(t => t.Name == name)
            ?? throw new ModelFormatException($"'{source}' has no '{name}' tensor.");
        if (tensor.ElementType != OnnxElementType.Float || !tensor.HasDynamicBatch || (tensor.ElementsPerRow ?? 1) != width)
            throw new ModelFormatException($"'{source}': tensor {tensor} does not match the feature schema (expected {width} per row).");
    }
}

/// <summary>Scores of a whole table: per row, per row × feature ([rows, Features]) and latent means ([rows, LatentSize]).</summary>
public sealed record TableScores(float[] Scores, float[] FeatureScores, float[] LatentMeans, int Features, int LatentSize)
{
    /// <summary>The <paramref name="count"/> features with the largest scores in row <paramref name="row"/>, largest first.</summary>
    public int[] TopFeatures(int row, int count)
    {
        var scores = FeatureScores.AsSpan(row * Features, Features);
        var order = new int[Features];
        for (int j = 0; j < order.Length; j++)
            order[j] = j;
        var keys = scores.ToArray();
        Array.Sort(keys, order);
        Array.Reverse(order);
        return order[..Math.Min(count, order.Length)];
    }
}

/// <summary>
/// Batch scoring through ONNX Runtime over buffers owned here: fill <see cref="X"/> and <see cref="Mask"/> for
/// <c>rows</c> rows, call <see cref="Run"/>, read the outputs. No allocations per batch. Not thread-safe: one per thread.
/// </summary>
public sealed class ModelScorer : IDisposable
{
    private readonly float[] _x;
    private readonly float[] _mask;
    private readonly OnnxBinding _binding;
    private readonly int _features;

    internal ModelScorer(ModelBundle bundle, int maxRows)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxRows, 1);
        Bundle = bundle;
        MaxRows = maxRows;
        _features = bundle.Schema.Count;
        _x = new float[maxRows * _features];
        _mask = new float[maxRows * _features];
        _binding = bundle.Session.Bind(
            [new TensorBuffer(ModelBundle.InputX, _x), new TensorBuffer(ModelBundle.InputMask, _mask)],
            [
                new TensorBuffer(ModelBundle.OutputScore, new float[maxRows]),
                new TensorBuffer(ModelBundle.OutputFeatureScores, new float[maxRows * _features]),
                new TensorBuffer(ModelBundle.OutputLatentMean, new float[maxRows * bundle.LatentSize]),
            ]);
    }

    public ModelBundle Bundle { get; }

    public int MaxRows { get; }

    /// <summary>Raw input rows, [MaxRows, F] row-major (the contract of <see cref="FeatureSchema"/>).</summary>
    public Span<float> X => _x;

    /// <summary>Presence mask, [MaxRows, F]: 1 present, 0 missing.</summary>
    public Span<float> Mask => _mask;

    /// <summary>Scores the first <paramref name="rows"/> rows of <see cref="X"/>/<see cref="Mask"/>.</summary>
    public void Run(int rows)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(rows, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(rows, MaxRows);
        _binding.Run(rows);
    }

    /// <summary>Scores of the last <see cref="Run"/> (higher = more anomalous).</summary>
    public ReadOnlySpan<float> Scores(int rows) => _binding.Output(0, rows);

    /// <summary>Per-feature scores of the last run, [rows, F].</summary>
    public ReadOnlySpan<float> FeatureScores(int rows) => _binding.Output(1, rows);

    /// <summary>Latent means of the last run, [rows, LatentSize].</summary>
    public ReadOnlySpan<float> LatentMeans(int rows) => _binding.Output(2, rows);

    public void Dispose() => _binding.Dispose();
}
