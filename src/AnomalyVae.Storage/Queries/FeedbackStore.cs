using Npgsql;

namespace AnomalyVae.Storage;

/// <summary>Stores user labels on flagged anomalies (anomaly_feedback).</summary>
public sealed class FeedbackStore(NpgsqlDataSource dataSource)
{
    public const string TruePositive = "true_positive";
    public const string FalsePositive = "false_positive";

    /// <summary>Longest note kept; longer ones are refused rather than cut.</summary>
    public const int MaxNoteLength = 4000;

    public static bool IsLabel(string? label) => label is TruePositive or FalsePositive;

    /// <summary>Adds a label to anomaly <paramref name="anomalyId"/>; null when there is no such anomaly.</summary>
    /// <param name="source">Who gave it: "api-key:&lt;id&gt;" or "cli".</param>
    public async Task<AnomalyFeedback?> AddAsync(long anomalyId, string label, string? note, string source, CancellationToken cancellationToken = default)
    {
        if (!IsLabel(label))
            throw new ArgumentException($"label must be '{TruePositive}' or '{FalsePositive}', not '{label}'.", nameof(label));
        if (note is { Length: > MaxNoteLength })
            throw new ArgumentException($"note is longer than {MaxNoteLength} characters.", nameof(note));
        ArgumentException.ThrowIfNullOrWhiteSpace(source);

        // INSERT ... SELECT inserts nothing for an unknown id, so no separate existence check can race a delete.
        await using var command = dataSource.CreateCommand(
            """
            INSERT INTO anomaly_feedback (anomaly_id, label, note, source)
            SELECT id, $2, $3, $4 FROM anomalies WHERE id = $1
            RETURNING id, created_at
            """);
        command.Parameters.Add(new NpgsqlParameter<long> { TypedValue = anomalyId });
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = label });
        command.Parameters.Add(new NpgsqlParameter { Value = (object?)note ?? DBNull.Value, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Text });
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = source });
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        if (!await reader.ReadAsync(cancellationToken))
            return null;
        return new AnomalyFeedback(reader.GetInt64(0), label, note, new DateTimeOffset(reader.GetFieldValue<DateTime>(1), TimeSpan.Zero), source);
    }

    /// <summary>Labels every anomaly of incident <paramref name="incidentId"/> stored so far (one feedback row each, so
    /// recalibration and training samples see them as any other label); returns how many, or null when there is no such
    /// incident.</summary>
    public async Task<long?> AddToIncidentAsync(long incidentId, string label, string? note, string source, CancellationToken cancellationToken = default)
    {
        if (!IsLabel(label))
            throw new ArgumentException($"label must be '{TruePositive}' or '{FalsePositive}', not '{label}'.", nameof(label));
        if (note is { Length: > MaxNoteLength })
            throw new ArgumentException($"note is longer than {MaxNoteLength} characters.", nameof(note));
        ArgumentException.ThrowIfNullOrWhiteSpace(source);

        await using var command = dataSource.CreateCommand(
            """
            WITH labelled AS (
              INSERT INTO anomaly_feedback (anomaly_id, label, note, source)
              SELECT a.id, $2, $3, $4 FROM anomalies a WHERE a.incident_id = $1 AND EXISTS (SELECT 1 FROM incidents WHERE id = $1)
              RETURNING 1)
            SELECT EXISTS (SELECT 1 FROM incidents WHERE id = $1), (SELECT count(*) FROM labelled)
            """);
        command.Parameters.Add(new NpgsqlParameter<long> { TypedValue = incidentId });
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = label });
        command.Parameters.Add(new NpgsqlParameter { Value = (object?)note ?? DBNull.Value, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Text });
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = source });
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        await reader.ReadAsync(cancellationToken);
        return reader.GetBoolean(0) ? reader.GetInt64(1) : null;
    }
}
