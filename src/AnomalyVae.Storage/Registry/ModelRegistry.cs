using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using AnomalyVae.Inference;
using AnomalyVae.Model;
using Npgsql;

namespace AnomalyVae.Storage;

/// <summary>A registry operation that cannot be done as asked (unknown version, duplicate, bad name).</summary>
public sealed class ModelRegistryException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>A model in the registry (without its ONNX bytes). <see cref="Window"/>: a windowed model's window (null for
/// a model that scores each event alone, and for models registered before the registry recorded windows).</summary>
public sealed record RegisteredModel(
    long Id,
    string Detector,
    string Version,
    string Status,
    DateTimeOffset CreatedAt,
    DateTimeOffset RegisteredAt,
    DateTimeOffset? ActivatedAt,
    long SizeBytes,
    double? Threshold,
    double? TargetFalsePositiveRate,
    int? FeatureCount,
    JsonElement TrainingMetrics,
    JsonElement? EvaluationMetrics,
    WindowDefinition? Window = null);

/// <summary>The model a detector runs now.</summary>
public sealed record ActiveModel(string Detector, string Version, byte[] Onnx);

/// <summary>Result of an activation: the model now active and the version it replaced (null when none).</summary>
public sealed record ModelActivation(RegisteredModel Model, string? PreviousVersion);

/// <summary>
/// The model registry in PostgreSQL (table <c>models</c>): registers validated AnomalyVae models per detector and
/// switches which one is active (at most one; rollback is activating an older version). Each activation notifies
/// <see cref="NotifyChannel"/> in its transaction, so a LISTENing serve reloads <see cref="GetActiveAsync"/> on commit.
/// </summary>
public sealed partial class ModelRegistry(NpgsqlDataSource dataSource)
{
    public const string NotifyChannel = "anomalyvae_models";
    public const string Candidate = "candidate";
    public const string Active = "active";
    public const string Retired = "retired";

    /// <summary>Largest model file accepted (bytea can hold 1 GB; models here are kilobytes to megabytes).</summary>
    public const long MaxModelBytes = 256L * 1024 * 1024;

    private const string ModelColumns =
        """
        id, detector, version, status, created_at, registered_at, activated_at, octet_length(onnx),
        (metadata ->> 'threshold')::double precision, (metadata ->> 'target_fpr')::double precision,
        jsonb_array_length(CASE WHEN jsonb_typeof(metadata #> '{features,features}') = 'array' THEN metadata #> '{features,features}' ELSE '[]' END),
        training_metrics::text, evaluation_metrics::text, (metadata -> 'window')::text
        """;

    /// <summary>Detector names: letters, digits, '.', '_' and '-', up to 100 characters (they appear in URLs and metrics).</summary>
    public static bool IsDetectorName(string? name) => name is not null && DetectorName().IsMatch(name);

    /// <summary>Registers the model file at <paramref name="path"/> for <paramref name="detector"/>.</summary>
    public async Task<RegisteredModel> RegisterFileAsync(string detector, string path, bool activate, CancellationToken cancellationToken = default)
    {
        var info = new FileInfo(path);
        if (!info.Exists)
            throw new ModelRegistryException($"model file '{path}' does not exist.");
        if (info.Length > MaxModelBytes)
            throw new ModelRegistryException($"model file '{path}' is {info.Length} bytes; the registry takes at most {MaxModelBytes}.");
        var bytes = await File.ReadAllBytesAsync(path, cancellationToken);
        return await RegisterAsync(detector, bytes, path, activate, cancellationToken);
    }

    /// <summary>
    /// Validates <paramref name="onnx"/> as an AnomalyVae model (<see cref="ModelFormatException"/> otherwise) and stores it
    /// as a candidate of <paramref name="detector"/>; with <paramref name="activate"/> it becomes the active model in the same
    /// transaction (retiring the previous one).
    /// </summary>
    /// <param name="source">Names the model in error messages (its file name).</param>
    public async Task<RegisteredModel> RegisterAsync(string detector, byte[] onnx, string source, bool activate, CancellationToken cancellationToken = default)
    {
        CheckDetector(detector);
        ArgumentNullException.ThrowIfNull(onnx);
        string version;
        DateTimeOffset createdAt;
        JsonObject metadata;
        string training;
        using (var bundle = ModelBundle.Load(onnx, source))
        {
            version = bundle.Version;
            createdAt = bundle.CreatedAt;
            var file = bundle.Metadata;
            training = ObjectOrEmpty(bundle.TrainingSummaryJson);
            metadata = new JsonObject
            {
                ["format"] = ModelFileMetadata.FormatVersion,
                ["version"] = version,
                ["created_at"] = createdAt.ToString("O", System.Globalization.CultureInfo.InvariantCulture),
                ["threshold"] = bundle.Calibration.Threshold,
                ["target_fpr"] = bundle.Calibration.TargetFalsePositiveRate,
                ["latent_size"] = bundle.LatentSize,
                ["features"] = JsonNode.Parse(file.FeaturesJson),
                ["calibration"] = JsonNode.Parse(file.CalibrationJson),
                ["architecture"] = file.ArchitectureJson is { } architecture ? TryParse(architecture) : null,
                // A windowed model's W and entity/order fields, so lists show which detectors read history.
                ["window"] = bundle.Window is { } window ? JsonNode.Parse(window.ToJson()) : null,
                ["training"] = JsonNode.Parse(training),
            };
        }

        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        await LockDetectorAsync(connection, transaction, detector, cancellationToken);
        long id;
        await using (var insert = new NpgsqlCommand(
            """
            INSERT INTO models (detector, version, created_at, onnx, metadata, training_metrics)
            VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb)
            ON CONFLICT (detector, version) DO NOTHING
            RETURNING id
            """, connection, transaction))
        {
            insert.Parameters.Add(new NpgsqlParameter<string> { TypedValue = detector });
            insert.Parameters.Add(new NpgsqlParameter<string> { TypedValue = version });
            insert.Parameters.Add(new NpgsqlParameter<DateTime> { TypedValue = createdAt.UtcDateTime });
            insert.Parameters.Add(new NpgsqlParameter<byte[]> { TypedValue = onnx });
            insert.Parameters.Add(new NpgsqlParameter<string> { TypedValue = metadata.ToJsonString() });
            insert.Parameters.Add(new NpgsqlParameter<string> { TypedValue = training });
            var result = await insert.ExecuteScalarAsync(cancellationToken);
            if (result is not long newId)
                throw new ModelRegistryException($"detector '{detector}' already has model version {version} registered ('{source}' is the same model).");
            id = newId;
        }

        if (activate)
            await ActivateInTransactionAsync(connection, transaction, detector, id, cancellationToken);
        var model = await ReadAsync(connection, transaction, "id = $1", cancellationToken, id);
        await transaction.CommitAsync(cancellationToken);
        return model.Single();
    }

    /// <summary>
    /// Makes <paramref name="version"/> the active model of <paramref name="detector"/> in one transaction: the previous
    /// active model becomes retired, this one active, and listeners are notified. Activating the active version changes nothing.
    /// </summary>
    /// <exception cref="ModelRegistryException">No such version for the detector.</exception>
    public async Task<ModelActivation> ActivateAsync(string detector, string version, CancellationToken cancellationToken = default)
    {
        CheckDetector(detector);
        ArgumentNullException.ThrowIfNull(version);
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        await LockDetectorAsync(connection, transaction, detector, cancellationToken);
        var target = (await ReadAsync(connection, transaction, "detector = $1 AND version = $2", cancellationToken, detector, version)).SingleOrDefault()
            ?? throw new ModelNotFoundException(detector, version);
        var previous = (await ReadAsync(connection, transaction, "detector = $1 AND status = 'active'", cancellationToken, detector)).SingleOrDefault();
        if (target.Status != Active)
            await ActivateInTransactionAsync(connection, transaction, detector, target.Id, cancellationToken);
        var model = (await ReadAsync(connection, transaction, "id = $1", cancellationToken, target.Id)).Single();
        await transaction.CommitAsync(cancellationToken);
        return new ModelActivation(model, previous?.Version);
    }

    /// <summary>Stores <paramref name="metricsJson"/> (a JSON object) as the evaluation metrics of a registered version.</summary>
    /// <exception cref="ModelNotFoundException">No such version for the detector.</exception>
    public async Task SetEvaluationMetricsAsync(string detector, string version, string metricsJson, CancellationToken cancellationToken = default)
    {
        await using var command = dataSource.CreateCommand("UPDATE models SET evaluation_metrics = $3::jsonb WHERE detector = $1 AND version = $2");
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = detector });
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = version });
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = metricsJson });
        if (await command.ExecuteNonQueryAsync(cancellationToken) == 0)
            throw new ModelNotFoundException(detector, version);
    }

    /// <summary>Registered models, newest registration first; of one detector when <paramref name="detector"/> is given.</summary>
    public async Task<IReadOnlyList<RegisteredModel>> ListAsync(string? detector = null, CancellationToken cancellationToken = default)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        return detector is null
            ? await ReadAsync(connection, null, "true", cancellationToken)
            : await ReadAsync(connection, null, "detector = $1", cancellationToken, detector);
    }

    /// <summary>The active model of <paramref name="detector"/> with its ONNX bytes; null when it has none.</summary>
    public async Task<ActiveModel?> GetActiveAsync(string detector, CancellationToken cancellationToken = default)
    {
        await using var command = dataSource.CreateCommand("SELECT version, onnx FROM models WHERE detector = $1 AND status = 'active'");
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = detector });
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        return await reader.ReadAsync(cancellationToken)
            ? new ActiveModel(detector, reader.GetString(0), reader.GetFieldValue<byte[]>(1))
            : null;
    }

    /// <summary>The active version of <paramref name="detector"/> without its bytes (cheap enough to poll); null when none.</summary>
    public async Task<string?> GetActiveVersionAsync(string detector, CancellationToken cancellationToken = default)
    {
        await using var command = dataSource.CreateCommand("SELECT version FROM models WHERE detector = $1 AND status = 'active'");
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = detector });
        return await command.ExecuteScalarAsync(cancellationToken) as string;
    }

    private static async Task ActivateInTransactionAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, string detector, long id, CancellationToken cancellationToken)
    {
        // Retire first: the partial unique index allows one active row per detector after every statement.
        await using var batch = new NpgsqlBatch(connection, transaction)
        {
            BatchCommands =
            {
                new NpgsqlBatchCommand("UPDATE models SET status = 'retired' WHERE detector = $1 AND status = 'active' AND id <> $2")
                {
                    Parameters = { new NpgsqlParameter<string> { TypedValue = detector }, new NpgsqlParameter<long> { TypedValue = id } },
                },
                new NpgsqlBatchCommand("UPDATE models SET status = 'active', activated_at = now() WHERE id = $1")
                {
                    Parameters = { new NpgsqlParameter<long> { TypedValue = id } },
                },
                new NpgsqlBatchCommand($"SELECT pg_notify('{NotifyChannel}', $1)")
                {
                    Parameters = { new NpgsqlParameter<string> { TypedValue = detector } },
                },
            },
        };
        await batch.ExecuteNonQueryAsync(cancellationToken);
    }

    /// <summary>Serializes registrations and activations of one detector (transaction-scoped advisory lock).</summary>
    private static async Task LockDetectorAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, string detector, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand("SELECT pg_advisory_xact_lock(hashtextextended('anomalyvae.models:' || $1, 0))", connection, transaction);
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = detector });
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    private static async Task<List<RegisteredModel>> ReadAsync(
        NpgsqlConnection connection, NpgsqlTransaction? transaction, string where, CancellationToken cancellationToken, params object[] parameters)
    {
        await using var command = new NpgsqlCommand(
            $"SELECT {ModelColumns} FROM models WHERE {where} ORDER BY registered_at DESC, id DESC", connection, transaction);
        foreach (var parameter in parameters)
            command.Parameters.Add(new NpgsqlParameter { Value = parameter });
        var models = new List<RegisteredModel>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            using var training = JsonDocument.Parse(reader.GetString(11));
            JsonElement? evaluation = null;
            if (!reader.IsDBNull(12))
            {
                using var document = JsonDocument.Parse(reader.GetString(12));
                evaluation = document.RootElement.Clone();
            }
            models.Add(new RegisteredModel(
                reader.GetInt64(0), reader.GetString(1), reader.GetString(2), reader.GetString(3),
                Time(reader.GetFieldValue<DateTime>(4)), Time(reader.GetFieldValue<DateTime>(5)),
                reader.IsDBNull(6) ? null : Time(reader.GetFieldValue<DateTime>(6)),
                reader.GetInt32(7),
                reader.IsDBNull(8) ? null : reader.GetDouble(8),
                reader.IsDBNull(9) ? null : reader.GetDouble(9),
                reader.GetInt32(10) is > 0 and var count ? count : null,
                training.RootElement.Clone(),
                evaluation,
                reader.IsDBNull(13) || reader.GetString(13) == "null" ? null : WindowDefinition.FromJson(reader.GetString(13))));
        }
        return models;
    }

    private static DateTimeOffset Time(DateTime utc) => new(utc, TimeSpan.Zero);

    private static void CheckDetector(string detector)
    {
        if (!IsDetectorName(detector))
            throw new ModelRegistryException($"detector name '{detector}' is not valid: use 1-100 letters, digits, '.', '_' or '-'.");
    }

    /// <summary>The training summary as a JSON object ({} when absent or not an object, so the column stays an object).</summary>
    private static string ObjectOrEmpty(string json) =>
        TryParse(json) is JsonObject value ? value.ToJsonString() : "{}";

    private static JsonNode? TryParse(string json)
    {
        try
        {
            return JsonNode.Parse(json);
        }
        catch (JsonException)
        {
            return null;
        }
    }

    [GeneratedRegex(@"^[A-Za-z0-9._-]{1,100}\z", RegexOptions.CultureInvariant)]
    private static partial Regex DetectorName();
}

/// <summary>The detector has no model of that version.</summary>
public sealed class ModelNotFoundException(string detector, string version)
    : Exception($"detector '{detector}' has no model version '{version}'.")
{
    public string Detector { get; } = detector;

    public string Version { get; } = version;
}
