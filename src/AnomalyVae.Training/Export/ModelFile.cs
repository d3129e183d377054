using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Serialization;
using AnomalyVae.Model;
using AnomalyVae.Training.Engine;
using Google.Protobuf;

using OnnxProto = global::Onnx;

namespace AnomalyVae.Training.Export;

/// <summary>What the trainer records about a run, stored in the model's metadata.</summary>
public sealed record ModelTrainingSummary
{
    public required int Rows { get; init; }
    public required int TrainingRows { get; init; }
    public required int ValidationRows { get; init; }
    public required int Epochs { get; init; }
    public required int BestEpoch { get; init; }
    public required double TrainLoss { get; init; }
    public required double ValidationLoss { get; init; }
    public required int Seed { get; init; }
    public required int Threads { get; init; }
    public required int[] Hidden { get; init; }
    public required int Latent { get; init; }
    public required float Beta { get; init; }
    public required int BatchSize { get; init; }
    public required float LearningRate { get; init; }
    public required int ScoringSamples { get; init; }
    public IReadOnlyList<double> TrainLossPerEpoch { get; init; } = [];
    public IReadOnlyList<double> ValidationLossPerEpoch { get; init; } = [];
    public string? DataFile { get; init; }

    /// <summary>VAEs in the model (null: one). Epochs, losses and seed above are member 0's.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public int? Ensemble { get; init; }

    /// <summary>Each member's best validation loss (null: one VAE).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyList<double>? MemberValidationLoss { get; init; }

    /// <summary>When the model was made. Taken from SOURCE_DATE_EPOCH when set, so identical runs give identical files.</summary>
    public required DateTimeOffset CreatedAt { get; init; }

    public static DateTimeOffset Now()
    {
        var epoch = Environment.GetEnvironmentVariable("SOURCE_DATE_EPOCH");
        return long.TryParse(epoch, NumberStyles.Integer, CultureInfo.InvariantCulture, out long seconds)
            ? DateTimeOffset.FromUnixTimeSeconds(seconds)
            : DateTimeOffset.UtcNow;
    }
}

/// <summary>
/// A model file read back: the engine model (W·F features when windowed; an ensemble's member 0, which sample, encode
/// and interpolate use), schema, calibration, summary and window; <see cref="Members"/> every VAE of an ensemble.
/// </summary>
public sealed record ModelFileContents(VaeModel Model, FeatureSchema Schema, Calibration Calibration, ModelTrainingSummary? Summary, WindowDefinition? Window)
{
    /// <summary>Members 1..K−1 of an ensemble (empty: one VAE).</summary>
    public IReadOnlyList<VaeModel> OtherMembers { get; init; } = [];

    /// <summary>Every VAE the file holds, member 0 first (what re-exporting needs).</summary>
    public IReadOnlyList<VaeModel> Members => [Model, .. OtherMembers];

    /// <summary>The four parts every model has (callers that do not handle windows).</summary>
    public void Deconstruct(out VaeModel model, out FeatureSchema schema, out Calibration calibration, out ModelTrainingSummary? summary)
    {
        model = Model;
        schema = Schema;
        calibration = Calibration;
        summary = Summary;
    }
}

/// <summary>
/// The layout of an AnomalyVae ONNX file beyond the scoring graph: weight initializer names and the metadata
/// that lets the C# engine rebuild the exact <see cref="VaeModel"/> from the file (for sample, encode and
/// interpolate), so the single .onnx file is the whole model.
/// </summary>
public static class ModelFile
{
    public const string InputX = ModelFileMetadata.InputX;
    public const string InputMask = ModelFileMetadata.InputMask;
    public const string OutputScore = ModelFileMetadata.OutputScore;
    public const string OutputFeatureScores = ModelFileMetadata.OutputFeatureScores;
    public const string OutputLatentMean = ModelFileMetadata.OutputLatentMean;
    public const string EncoderPrefix = "encoder.";
    public const string DecoderPrefix = "decoder.";
    public const string Noise = "latent_noise";

    internal static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.CamelCase) },
    };

    /// <summary>Initializer prefix of ensemble member <paramref name="member"/> (member 0 has none, as a single VAE).</summary>
    public static string MemberPrefix(int member) => member == 0 ? "" : $"m{member}.";

    internal static void WriteMetadata(OnnxGraph g, IReadOnlyList<VaeModel> members, FeatureSchema schema, Calibration calibration, ModelTrainingSummary summary, WindowDefinition? window)
    {
        string features = schema.ToJson();
        string calibrationJson = calibration.ToJson();
        string architecture = JsonSerializer.Serialize(Architecture.Of(members[0]) with { Members = members.Count > 1 ? members.Count : null }, Json);
        g.Description = "AnomalyVae VAE model: score = -log p(x) (reconstruction probability or -ELBO, in nats), higher is more anomalous.";
        string? windowJson = window?.ToJson();
        var metadata = new ModelFileMetadata(features, calibrationJson, Version(members, features + windowJson, calibrationJson, summary.CreatedAt), summary.CreatedAt,
            JsonSerializer.Serialize(summary, Json), architecture, windowJson);
        foreach (var (key, value) in metadata.ToProperties())
            g.SetMetadata(key, value);
    }

    /// <summary>
    /// A version that names the content: creation date plus a hash of weights, features and calibration, so two
    /// different models never share a version and re-exporting the same model gives the same one.
    /// </summary>
    private static string Version(IReadOnlyList<VaeModel> members, string features, string calibration, DateTimeOffset createdAt)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var model in members)
        {
            foreach (var layer in model.Encoder.Concat(model.Decoder))
            {
                hash.AppendData(System.Runtime.InteropServices.MemoryMarshal.AsBytes(layer.Weights.AsSpan()));
                hash.AppendData(System.Runtime.InteropServices.MemoryMarshal.AsBytes(layer.Bias.AsSpan()));
            }
            hash.AppendData(System.Runtime.InteropServices.MemoryMarshal.AsBytes(model.Noise.AsSpan()));
        }
        hash.AppendData(System.Text.Encoding.UTF8.GetBytes(features));
        hash.AppendData(System.Text.Encoding.UTF8.GetBytes(calibration));
        return createdAt.UtcDateTime.ToString("yyyyMMdd", CultureInfo.InvariantCulture) + "-" +
               Convert.ToHexStringLower(hash.GetHashAndReset())[..12];
    }

    /// <summary>Reads a model file back into the engine's form (plus its schema and calibration).</summary>
    /// <exception cref="ModelFormatException">The file is not an AnomalyVae model or is damaged.</exception>
    public static ModelFileContents Read(string path)
    {
        OnnxProto.ModelProto proto;
        try
        {
            using var stream = File.OpenRead(path);
            proto = OnnxProto.ModelProto.Parser.ParseFrom(stream);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidProtocolBufferException)
        {
            throw new ModelFormatException($"'{path}' cannot be read as an ONNX model: {e.Message}", e);
        }
        return Read(proto, path);
    }

    /// <summary>Reads a model held in memory (e.g. from the registry); <paramref name="source"/> names it in errors.</summary>
    /// <exception cref="ModelFormatException">The bytes are not an AnomalyVae model or are damaged.</exception>
    public static ModelFileContents Read(byte[] onnx, string source)
    {
        ArgumentNullException.ThrowIfNull(onnx);
        OnnxProto.ModelProto proto;
        try
        {
            proto = OnnxProto.ModelProto.Parser.ParseFrom(onnx);
        }
        catch (InvalidProtocolBufferException e)
        {
            throw new ModelFormatException($"'{source}' cannot be read as an ONNX model: {e.Message}", e);
        }
        return Read(proto, source);
    }

    private static ModelFileContents Read(OnnxProto.ModelProto proto, string path)
    {
        var metadata = ModelFileMetadata.FromProperties(proto.MetadataProps.ToDictionary(p => p.Key, p => p.Value, StringComparer.Ordinal), path);
        var (schema, calibration) = metadata.Parse(path);
        var window = metadata.ParseWindow(path);
        try
        {
            var architecture = JsonSerializer.Deserialize<Architecture>(metadata.ArchitectureJson ?? throw new FormatException("no architecture"), Json)
                ?? throw new FormatException("empty architecture");
            var summary = metadata.TrainingJson is { } s ? JsonSerializer.Deserialize<ModelTrainingSummary>(s, Json) : null;
            var weights = proto.Graph.Initializer.ToDictionary(t => t.Name, FloatValues, StringComparer.Ordinal);
            int count = architecture.Members ?? 1;
            if (count is < 1 or > VaeTrainingOptions.MaxEnsemble)
                throw new FormatException($"the architecture names {count} members");
            return new ModelFileContents(architecture.Build(weights, ""), schema, calibration, summary, window)
            {
                OtherMembers = [.. Enumerable.Range(1, count - 1).Select(m => architecture.Build(weights, MemberPrefix(m)))],
            };
        }
        catch (Exception e) when (e is KeyNotFoundException or FormatException or JsonException or ArgumentException or FeatureSpecException)
        {
            throw new ModelFormatException($"'{path}' has damaged AnomalyVae metadata or weights: {e.Message}", e);
        }
    }

    private static float[] FloatValues(OnnxProto.TensorProto tensor)
    {
        if (tensor.DataType != (int)OnnxProto.TensorProto.Types.DataType.Float)
            return [];
        if (tensor.FloatData.Count > 0)
            return [.. tensor.FloatData];
        var raw = tensor.RawData.Span;
        var values = new float[raw.Length / sizeof(float)];
        System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(raw)[..values.Length].CopyTo(values);
        return values;
    }

    private sealed record LayerShape(int Inputs, int Outputs, Activation Activation, float Alpha);

    private sealed record Architecture(
        int LatentSize,
        float NumericLogVarMin,
        float NumericLogVarMax,
        float LatentLogVarMin,
        float LatentLogVarMax,
        VaeFeature[] Features,
        LayerShape[] Encoder,
        LayerShape[] Decoder)
    {
        /// <summary>VAEs of this shape in the file, member m's weights under <see cref="MemberPrefix"/> (null: one, as files before ensembles).</summary>
        [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
        public int? Members { get; init; }

        /// <summary>The members' score (null: the reconstruction probability, as every file before the −ELBO).</summary>
        [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
        public ScoreFunction? Score { get; init; }

        public static Architecture Of(VaeModel model) => new(
            model.LatentSize, model.NumericLogVarMin, model.NumericLogVarMax, model.LatentLogVarMin, model.LatentLogVarMax,
            [.. model.Features],
            [.. model.Encoder.Select(l => new LayerShape(l.Inputs, l.Outputs, l.Activation, l.Alpha))],
            [.. model.Decoder.Select(l => new LayerShape(l.Inputs, l.Outputs, l.Activation, l.Alpha))])
        {
            Score = model.ScoreFunction == ScoreFunction.ReconstructionProbability ? null : model.ScoreFunction,
        };

        public VaeModel Build(IReadOnlyDictionary<string, float[]> weights, string member)
        {
            static DenseLayer[] Layers(LayerShape[] shapes, string prefix, IReadOnlyDictionary<string, float[]> weights) =>
                [.. shapes.Select((s, i) => new DenseLayer(s.Inputs, s.Outputs, weights[$"{prefix}{i}.weight"], weights[$"{prefix}{i}.bias"], s.Activation, s.Alpha))];
            return new VaeModel(new VaeLayout(Features), LatentSize, Layers(Encoder, member + EncoderPrefix, weights), Layers(Decoder, member + DecoderPrefix, weights),
                weights[member + Noise], NumericLogVarMin, NumericLogVarMax, LatentLogVarMin, LatentLogVarMax)
            { ScoreFunction = Score ?? ScoreFunction.ReconstructionProbability };
        }
    }
}
