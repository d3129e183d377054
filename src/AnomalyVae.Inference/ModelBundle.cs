using System.Text.Json;
using AnomalyVae.Model;
using Microsoft.Extensions.Logging;
using Microsoft.ML.OnnxRuntime;

namespace AnomalyVae.Inference;

/// <summary>
/// An AnomalyVae model file loaded for scoring: the ONNX Runtime session plus what its metadata carries (the
/// fitted feature schema, the calibration, the version). One file is the whole model; nothing else is needed.
/// </summary>
public sealed class ModelBundle : IDisposable
{
    private ModelBundle(string source, OnnxSession session, ModelFileMetadata metadata, FeatureSchema schema, Calibration calibration, int latentSize,
        WindowDefinition? window)
    {
        Window = window;
        Source = source;
        Session = session;
        Metadata = metadata;
        Schema = schema;
        Calibration = calibration;
        LatentSize = latentSize;
    }

    public string Source { get; }

    public OnnxSession Session { get; }

    public FeatureSchema Schema { get; }

    public Calibration Calibration { get; }

    /// <summary>The window of a windowed model (input [N, W, F], the event at step W−1); null: each event alone.</summary>
    public WindowDefinition? Window { get; }

    /// <summary>W: 1 for a model that scores each event alone.</summary>
    public int Steps => Window?.Steps ?? 1;

    /// <summary>Input values per row: W·F.</summary>
    public int InputWidth => Steps * Schema.Count;

    /// <summary>Everything the file's metadata carries.</summary>
    public ModelFileMetadata Metadata { get; }

    /// <summary>Content-derived model version (stable for identical models).</summary>
    public string Version => Metadata.Version;

    public DateTimeOffset CreatedAt => Metadata.CreatedAt;

    /// <summary>The training summary as written by the trainer (rows, epochs, losses, hyper-parameters).</summary>
    public string TrainingSummaryJson => Metadata.TrainingJson ?? "{}";

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
            var metadata = ModelFileMetadata.FromProperties(session.Metadata.Custom, source);
            var (schema, calibration) = metadata.Parse(source);
            var window = metadata.ParseWindow(source);
            int inputWidth = (window?.Steps ?? 1) * schema.Count;
            CheckTensor(session.Inputs, ModelFileMetadata.InputX, inputWidth, source);
            CheckTensor(session.Inputs, ModelFileMetadata.InputMask, inputWidth, source);
            CheckTensor(session.Outputs, ModelFileMetadata.OutputScore, 1, source);
            CheckTensor(session.Outputs, ModelFileMetadata.OutputFeatureScores, schema.Count, source);
            var latent = session.Outputs.FirstOrDefault(o => o.Name == ModelFileMetadata.OutputLatentMean)
                ?? throw new ModelFormatException($"'{source}' has no '{ModelFileMetadata.OutputLatentMean}' output.");
            int latentSize = (int)(latent.ElementsPerRow ?? throw new ModelFormatException($"'{source}': latent size is not fixed."));
            return new ModelBundle(source, session, metadata, schema, calibration, latentSize, window);
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

    /// <summary>
    /// Scores a whole in-memory table in batches of <paramref name="batchRows"/> (CLI and tests), results in row
    /// order. A windowed model builds each row's window from the table (which must hold the window's entity and
    /// order columns as extra columns: see <see cref="WindowDefinition.Columns"/>).
    /// </summary>
    public TableScores Score(FeatureTable table, int batchRows = 1024, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(table);
        if (table.FeatureCount != Schema.Count)
            throw new ArgumentException($"The table has {table.FeatureCount} features; the model expects {Schema.Count}.");
        if (Window is not null)
            return Score(new FeatureWindows(table, Window), batchRows, cancellationToken);
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

    /// <summary>Scores every row's window (a windowed model), results in row order.</summary>
    public TableScores Score(FeatureWindows windows, int batchRows = 1024, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(windows);
        if (windows.Width != InputWidth)
            throw new ArgumentException($"The windows hold {windows.Width} values per row; the model expects {InputWidth}.");
        int rows = windows.RowCount, f = Schema.Count, z = LatentSize, width = InputWidth;
        var result = new TableScores(new float[rows], new float[rows * f], new float[rows * z], f, z);
        if (rows == 0)
            return result;
        using var scorer = CreateScorer(Math.Min(batchRows, rows));
        for (int first = 0; first < rows; first += scorer.MaxRows)
        {
            cancellationToken.ThrowIfCancellationRequested();
            int n = Math.Min(scorer.MaxRows, rows - first);
            for (int i = 0; i < n; i++)
                windows.CopyRaw(first + i, scorer.X.Slice(i * width, width), scorer.Mask.Slice(i * width, width));
            scorer.Run(n);
            scorer.Scores(n).CopyTo(result.Scores.AsSpan(first));
            scorer.FeatureScores(n).CopyTo(result.FeatureScores.AsSpan(first * f));
            scorer.LatentMeans(n).CopyTo(result.LatentMeans.AsSpan(first * z));
        }
        if (windows.Window.MaskFlaggedHistory)
            RescoreFlaggedHistory(windows, scorer, result, cancellationToken);
        return result;
    }

    /// <summary>
    /// <see cref="WindowDefinition.MaskFlaggedHistory"/>: after the whole windows are scored (done by the caller),
    /// goes wave by wave (<see cref="FeatureWindows.Waves"/>) so every row sees its predecessors' final flags; a row
    /// whose window holds flagged steps is scored again with them masked and keeps the lower of the two scores
    /// (<see cref="FlaggedHistory.PrefersMasked"/>).
    /// </summary>
    private void RescoreFlaggedHistory(FeatureWindows windows, ModelScorer scorer, TableScores result, CancellationToken cancellationToken)
    {
        int f = Schema.Count, z = LatentSize, width = InputWidth;
        var flagged = new bool[windows.RowCount];
        double threshold = Calibration.Threshold;
        var affected = new List<int>();
        foreach (var wave in windows.Waves())
        {
            cancellationToken.ThrowIfCancellationRequested();
            affected.Clear();
            foreach (int row in wave)
            {
                if (windows.HoldsFlagged(row, flagged))
                    affected.Add(row);
            }
            for (int first = 0; first < affected.Count; first += scorer.MaxRows)
            {
                int n = Math.Min(scorer.MaxRows, affected.Count - first);
                for (int i = 0; i < n; i++)
                    windows.CopyRaw(affected[first + i], scorer.X.Slice(i * width, width), scorer.Mask.Slice(i * width, width), flagged);
                scorer.Run(n);
                var scores = scorer.Scores(n);
                var featureScores = scorer.FeatureScores(n);
                var latent = scorer.LatentMeans(n);
                for (int i = 0; i < n; i++)
                {
                    int row = affected[first + i];
                    if (!FlaggedHistory.PrefersMasked(result.Scores[row], scores[i]))
                        continue;
                    result.Scores[row] = scores[i];
                    featureScores.Slice(i * f, f).CopyTo(result.FeatureScores.AsSpan(row * f, f));
                    latent.Slice(i * z, z).CopyTo(result.LatentMeans.AsSpan(row * z, z));
                }
            }
            foreach (int row in wave)
                flagged[row] = FlaggedHistory.IsFlagged(result.Scores[row], threshold);
        }
    }

    public void Dispose() => Session.Dispose();

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
        _x = new float[maxRows * bundle.InputWidth];
        _mask = new float[maxRows * bundle.InputWidth];
        _binding = bundle.Session.Bind(
            [new TensorBuffer(ModelFileMetadata.InputX, _x), new TensorBuffer(ModelFileMetadata.InputMask, _mask)],
            [
                new TensorBuffer(ModelFileMetadata.OutputScore, new float[maxRows]),
                new TensorBuffer(ModelFileMetadata.OutputFeatureScores, new float[maxRows * _features]),
                new TensorBuffer(ModelFileMetadata.OutputLatentMean, new float[maxRows * bundle.LatentSize]),
            ]);
    }

    public ModelBundle Bundle { get; }

    public int MaxRows { get; }

    /// <summary>Raw input rows, [MaxRows, F] row-major (the contract of <see cref="FeatureSchema"/>); a windowed model's [MaxRows, W, F].</summary>
    public Span<float> X => _x;

    /// <summary>Presence mask, same shape as <see cref="X"/>: 1 present, 0 missing.</summary>
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
