using System.Text.Json;
using Npgsql;

namespace AnomalyVae.Storage;

/// <summary>What happened to an incident in one batch transaction (or, for a re-send, where it stands now).</summary>
public enum IncidentTransitionKind
{
    Opened,
    Closed,
}

/// <summary>
/// An incident as alerting sees it: its entity, its state after the batch, and the Kafka coordinates of the event that
/// opened it. The coordinates, not the row ids, identify it to alert receivers: a batch replayed after a crash (its
/// first transaction rolled back) stores the same events under new ids, but its incidents have the same first event.
/// </summary>
public sealed record IncidentTransition(
    IncidentTransitionKind Kind,
    string Detector,
    string Entity,
    string FirstTopic,
    int FirstPartition,
    long FirstOffset,
    DateTime FirstAt,
    DateTime LastAt,
    DateTime? ClosedAt,
    long AnomalyCount,
    double PeakScore,
    double MinPValue,
    IReadOnlyList<KeyValuePair<string, double>> TopFeatures)
{
    /// <summary>Top features kept per transition.</summary>
    public const int FeatureCount = 3;

    /// <summary>The incident's identity across replays: "&lt;topic&gt;/&lt;partition&gt;/&lt;offset&gt;" of its first event.</summary>
    public string IncidentKey => $"{FirstTopic}/{FirstPartition}/{FirstOffset}";
}

/// <summary>
/// Reads incident transitions: inside a batch transaction (the incidents it opened or closed, before it commits) and
/// for re-sending (the incidents open now, and those closed recently).
/// </summary>
public static class IncidentTransitions
{
    private const string Columns = """
        i.entity, i.first_at, i.last_at, i.closed_at, i.anomaly_count, i.peak_score, i.min_p_value, i.feature_scores::text,
        a.topic, a."partition", a."offset", i.detector
        """;

    // Incidents closed in this transaction (by id), then those opened in it (by first anomaly, the unique key): two
    // index lookups (an OR of the two would scan the detector's incidents). The first anomaly's row gives the Kafka
    // coordinates. Both lists come from this transaction's own writes.
    private const string ByTransaction = $"""
        SELECT {Columns}, false AS opened, i.id
        FROM incidents i JOIN anomalies a ON a.id = i.first_anomaly_id
        WHERE i.id = ANY($2::bigint[])
        UNION ALL
        SELECT {Columns}, true, i.id
        FROM incidents i JOIN anomalies a ON a.id = i.first_anomaly_id
        WHERE i.detector = $1 AND i.first_anomaly_id = ANY($3::bigint[])
        """;

    // Open incidents of the given detectors, and those closed (by wall clock) since $2.
    private const string Current = $"""
        SELECT {Columns}, false
        FROM incidents i JOIN anomalies a ON a.id = i.first_anomaly_id
        WHERE i.detector = ANY($1::text[]) AND (i.closed_at IS NULL OR i.updated_at >= $2)
        ORDER BY i.id
        """;

    /// <summary>The transitions of the incidents this transaction closed (<paramref name="closedIds"/>) or opened (first
    /// anomaly in <paramref name="openedFirstAnomalies"/>); an incident opened and closed by it yields both.</summary>
    internal static async Task<List<IncidentTransition>> ReadAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, string detector,
        long[] closedIds, long[] openedFirstAnomalies, CancellationToken cancellationToken)
    {
        var transitions = new List<IncidentTransition>();
        if (closedIds.Length == 0 && openedFirstAnomalies.Length == 0)
            return transitions;
        await using var command = new NpgsqlCommand(ByTransaction, connection, transaction);
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = detector });
        command.Parameters.Add(new NpgsqlParameter<long[]> { TypedValue = closedIds });
        command.Parameters.Add(new NpgsqlParameter<long[]> { TypedValue = openedFirstAnomalies });
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        var closed = closedIds.ToHashSet();
        while (await reader.ReadAsync(cancellationToken))
        {
            if (!reader.GetBoolean(12))
            {
                transitions.Add(Read(reader, IncidentTransitionKind.Closed));
                continue;
            }
            transitions.Add(Read(reader, IncidentTransitionKind.Opened));
            // Opened and closed by the rules within this batch (a new incident is not among the ids closed by id).
            if (!reader.IsDBNull(3) && !closed.Contains(reader.GetInt64(13)))
                transitions.Add(Read(reader, IncidentTransitionKind.Closed));
        }
        // In the order they happened (event time): an entity's old incident closes before its next one opens, and an
        // incident opens before it closes.
        return [.. transitions.OrderBy(t => t.Kind == IncidentTransitionKind.Opened ? t.FirstAt : t.ClosedAt ?? t.LastAt).ThenBy(t => t.Kind)];
    }

    /// <summary>Every open incident of <paramref name="detectors"/> (as <see cref="IncidentTransitionKind.Opened"/>), and every one
    /// closed since <paramref name="closedSince"/> (wall clock; as <see cref="IncidentTransitionKind.Closed"/>).</summary>
    public static async Task<List<IncidentTransition>> CurrentAsync(NpgsqlDataSource dataSource, string[] detectors, DateTime closedSince,
        CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand(Current);
        command.Parameters.Add(new NpgsqlParameter<string[]> { TypedValue = detectors });
        command.Parameters.Add(new NpgsqlParameter<DateTime> { TypedValue = DateTime.SpecifyKind(closedSince, DateTimeKind.Utc) });
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        var transitions = new List<IncidentTransition>();
        while (await reader.ReadAsync(cancellationToken))
            transitions.Add(Read(reader, reader.IsDBNull(3) ? IncidentTransitionKind.Opened : IncidentTransitionKind.Closed));
        return transitions;
    }

    private static IncidentTransition Read(NpgsqlDataReader reader, IncidentTransitionKind kind)
    {
        var scores = JsonSerializer.Deserialize<Dictionary<string, double>>(reader.GetString(7)) ?? [];
        var top = scores.OrderByDescending(f => f.Value).ThenBy(f => f.Key, StringComparer.Ordinal).Take(IncidentTransition.FeatureCount).ToArray();
        return new IncidentTransition(kind, reader.GetString(11), reader.GetString(0), reader.GetString(8), reader.GetInt32(9), reader.GetInt64(10),
            reader.GetFieldValue<DateTime>(1), reader.GetFieldValue<DateTime>(2), reader.IsDBNull(3) ? null : reader.GetFieldValue<DateTime>(3),
            reader.GetInt64(4), reader.GetDouble(5), reader.GetDouble(6), top);
    }
}
