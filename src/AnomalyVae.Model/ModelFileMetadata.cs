using System.Globalization;
using System.Text.Json;

namespace AnomalyVae.Model;

/// <summary>A file that is not a usable AnomalyVae model: unreadable, not ONNX, or missing our metadata.</summary>
public sealed class ModelFormatException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>ONNX tensor element types (TensorProto.DataType; ORT's TensorElementType has the same values).</summary>
public enum OnnxElementType
{
    Undefined = 0,
    Float = 1,
    UInt8 = 2,
    Int8 = 3,
    UInt16 = 4,
    Int16 = 5,
    Int32 = 6,
    Int64 = 7,
    String = 8,
    Bool = 9,
    Float16 = 10,
    Double = 11,
    UInt32 = 12,
    UInt64 = 13,
    Complex64 = 14,
    Complex128 = 15,
    BFloat16 = 16,
}

/// <summary>
/// The model file's contract beyond its ONNX graph (metadata_props and tensor names; docs/cli.md#the-model-file),
/// defined in this one place: the trainer writes it, the ONNX Runtime loader and the registry read it.
/// </summary>
/// <param name="Version">Content-derived: identical models share it, different ones never do.</param>
/// <param name="WindowJson">The window definition of a windowed model (<see cref="WindowDefinition"/>); null: each event is scored alone.</param>
public sealed record ModelFileMetadata(string FeaturesJson, string CalibrationJson, string Version, DateTimeOffset CreatedAt,
    string? TrainingJson, string? ArchitectureJson, string? WindowJson = null)
{
    public const string FormatKey = "anomalyvae.format";
    public const string FeaturesKey = "anomalyvae.features";
    public const string CalibrationKey = "anomalyvae.calibration";
    public const string TrainingKey = "anomalyvae.training";
    public const string ArchitectureKey = "anomalyvae.architecture";
    public const string VersionKey = "anomalyvae.model_version";
    public const string CreatedAtKey = "anomalyvae.created_at";
    public const string WindowKey = "anomalyvae.window";
    public const string FormatVersion = "1";

    /// <summary>
    /// Graph inputs ([batch, F] each; a windowed model's [batch, W, F], the event itself at step W−1) and outputs
    /// ([batch], [batch, F], [batch, latent]).
    /// </summary>
    public const string InputX = "x";
    public const string InputMask = "mask";
    public const string OutputScore = "score";
    public const string OutputFeatureScores = "feature_scores";
    public const string OutputLatentMean = "latent_mean";

    /// <summary>The metadata_props to write, in file order.</summary>
    public IEnumerable<KeyValuePair<string, string>> ToProperties()
    {
        yield return new(FormatKey, FormatVersion);
        yield return new(FeaturesKey, FeaturesJson);
        yield return new(CalibrationKey, CalibrationJson);
        if (ArchitectureJson is not null)
            yield return new(ArchitectureKey, ArchitectureJson);
        if (TrainingJson is not null)
            yield return new(TrainingKey, TrainingJson);
        if (WindowJson is not null)
            yield return new(WindowKey, WindowJson);
        yield return new(CreatedAtKey, CreatedAt.ToUniversalTime().ToString("O", CultureInfo.InvariantCulture));
        yield return new(VersionKey, Version);
    }

    /// <summary>Reads a model file's metadata_props; <paramref name="source"/> names the file in errors.</summary>
    /// <exception cref="ModelFormatException">Not an AnomalyVae model, another format version, or a key missing.</exception>
    public static ModelFileMetadata FromProperties(IReadOnlyDictionary<string, string> properties, string source)
    {
        ArgumentNullException.ThrowIfNull(properties);
        if (!properties.TryGetValue(FormatKey, out var format))
            throw new ModelFormatException($"'{source}' is an ONNX model but not an AnomalyVae model (no '{FormatKey}' metadata).");
        if (format != FormatVersion)
            throw new ModelFormatException($"'{source}' has AnomalyVae model format {format}; this build reads format {FormatVersion}.");
        string createdAt = Require(properties, CreatedAtKey, source);
        if (!DateTimeOffset.TryParse(createdAt, CultureInfo.InvariantCulture, DateTimeStyles.None, out var created))
            throw new ModelFormatException($"'{source}' has unreadable AnomalyVae metadata: '{CreatedAtKey}' is not a time.");
        return new ModelFileMetadata(Require(properties, FeaturesKey, source), Require(properties, CalibrationKey, source),
            Require(properties, VersionKey, source), created,
            properties.TryGetValue(TrainingKey, out var training) ? training : null,
            properties.TryGetValue(ArchitectureKey, out var architecture) ? architecture : null,
            properties.TryGetValue(WindowKey, out var window) ? window : null);
    }

    /// <summary>The fitted schema and calibration this metadata carries.</summary>
    /// <exception cref="ModelFormatException">Either does not parse.</exception>
    public (FeatureSchema Schema, Calibration Calibration) Parse(string source)
    {
        try
        {
            return (FeatureSchema.FromJson(FeaturesJson), Calibration.FromJson(CalibrationJson));
        }
        catch (Exception e) when (e is FormatException or JsonException or FeatureSpecException or ArgumentException)
        {
            throw new ModelFormatException($"'{source}' has unreadable AnomalyVae metadata: {e.Message}", e);
        }
    }

    /// <summary>The window definition, or null for a model that scores each event alone.</summary>
    /// <exception cref="ModelFormatException">The window metadata does not parse.</exception>
    public WindowDefinition? ParseWindow(string source)
    {
        if (WindowJson is null)
            return null;
        try
        {
            return WindowDefinition.FromJson(WindowJson);
        }
        catch (FormatException e)
        {
            throw new ModelFormatException($"'{source}' has unreadable AnomalyVae metadata: {e.Message}", e);
        }
    }

    private static string Require(IReadOnlyDictionary<string, string> properties, string key, string source) =>
        properties.TryGetValue(key, out var value) ? value : throw new ModelFormatException($"'{source}' lacks the '{key}' metadata.");
}
