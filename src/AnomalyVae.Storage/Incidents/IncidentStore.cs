using System.Text.Json;
using Npgsql;

namespace AnomalyVae.Storage;

/// <summary>
/// The incident part of a batch's transaction (<see cref="AnomalyStore.WriteAsync(BatchRecord, CancellationToken)"/>): the anomaly insert returns the
/// rows it stored, the open incidents of their entities are read under a row lock, <see cref="IncidentRules"/> groups
/// the new rows, and the changes are appended to the batch's remaining statements. Only rows the insert stored are
/// grouped: a replayed batch (its anomalies already there) changes no incident, which keeps incidents exactly-once
/// with the anomalies and offsets. The lock orders consumers that share a detector; two of them opening an entity's
/// first incident at once collide on incidents_open_key, and the loser's transaction is retried.
/// </summary>
internal static class IncidentStore
{
    public const string Returning = """ RETURNING id, "partition", "offset", detected_at""";

    private const string LoadOpen = """
        SELECT id, entity, first_anomaly_id, first_at, last_at, anomaly_count, peak_score, min_p_value, peak_anomaly_id, feature_scores::text
        FROM incidents WHERE detector = $1 AND entity = ANY($2::text[]) AND closed_at IS NULL
        ORDER BY id FOR UPDATE
        """;

    // Loaded incidents the batch extended or closed (before new ones open: an entity's open incident must be closed
    // before its next one is inserted, or incidents_open_key would refuse it).
    private const string UpdateLoaded = """
        UPDATE incidents i SET first_at = u.f, last_at = u.l, anomaly_count = u.n, peak_score = u.ps, min_p_value = u.pv,
          peak_anomaly_id = u.pa, feature_scores = u.fs::jsonb, closed_at = u.c, updated_at = now()
        FROM unnest($1::bigint[], $2::timestamptz[], $3::timestamptz[], $4::bigint[], $5::float8[], $6::float8[], $7::bigint[], $8::text[], $9::timestamptz[])
             AS u(id, f, l, n, ps, pv, pa, fs, c)
        WHERE i.id = u.id
        """;

    // The partitions' clocks move forward to the newest event time of the batch (a replay moves nothing).
    private const string AdvanceClocks = """
        INSERT INTO incident_clocks AS c (detector, topic, "partition", clock)
        SELECT $1, $2, u.p, u.c FROM unnest($3::integer[], $4::timestamptz[]) AS u(p, c)
        ON CONFLICT (detector, topic, "partition") DO UPDATE SET clock = GREATEST(c.clock, excluded.clock)
        """;

    // Every open incident of the detector that went quiet for longer than the gap by the detector's clock: the
    // slowest partition's (the database's time when no event carried a time). Runs after this batch's own changes.
    private const string CloseQuiet = """
        UPDATE incidents SET closed_at = last_at + $2::interval, updated_at = now()
        WHERE detector = $1 AND closed_at IS NULL
          AND last_at + $2::interval < COALESCE((SELECT min(clock) FROM incident_clocks WHERE detector = $1), now())
        """;

    // New incidents, then every grouped anomaly's incident_id (a new incident is found by its first anomaly). $15 is the
    // batch's detected_at (every row this batch stored has it): the partition key, so the update reads one partition
    // of anomalies instead of probing each partition's index for each id.
    private const string OpenAndAssign = """
        WITH opened AS (
          INSERT INTO incidents (detector, entity, first_anomaly_id, first_at, last_at, anomaly_count, peak_score, min_p_value,
                                 peak_anomaly_id, feature_scores, closed_at)
          SELECT $1, u.e, u.fa, u.f, u.l, u.n, u.ps, u.pv, u.pa, u.fs::jsonb, u.c
          FROM unnest($2::text[], $3::bigint[], $4::timestamptz[], $5::timestamptz[], $6::bigint[], $7::float8[], $8::float8[], $9::bigint[],
                      $10::text[], $11::timestamptz[]) AS u(e, fa, f, l, n, ps, pv, pa, fs, c)
          RETURNING id, first_anomaly_id)
        UPDATE anomalies a SET incident_id = COALESCE(NULLIF(m.incident, 0), o.id)
        FROM unnest($12::bigint[], $13::bigint[], $14::bigint[]) AS m(anomaly, incident, first)
             LEFT JOIN opened o ON o.first_anomaly_id = m.first
        WHERE a.id = m.anomaly AND a.detected_at = $15
        """;

    /// <summary>
    /// Runs <paramref name="insert"/> (the anomaly insert with <see cref="Returning"/>) with the load of the open
    /// incidents in one round trip, groups the stored rows and appends the incident writes to <paramref name="rest"/>
    /// (the close of quiet incidents returning their ids when <paramref name="returnClosed"/>). Returns the grouping.
    /// </summary>
    public static async Task<IncidentChanges> InsertAndGroupAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, NpgsqlBatchCommand insert,
        BatchRecord record, NpgsqlBatch rest, bool returnClosed, CancellationToken cancellationToken)
    {
        var entities = record.Entities.OfType<string>().Distinct(StringComparer.Ordinal).ToArray();
        await using var first = new NpgsqlBatch(connection, transaction);
        first.BatchCommands.Add(insert);
        var load = new NpgsqlBatchCommand(LoadOpen);
        load.Parameters.Add(new NpgsqlParameter<string> { TypedValue = record.Detector });
        load.Parameters.Add(new NpgsqlParameter<string[]> { TypedValue = entities });
        first.BatchCommands.Add(load);

        var stored = new List<(int Index, long Id, DateTime DetectedAt)>();
        var open = new Dictionary<string, Incident>(StringComparer.Ordinal);
        await using (var reader = await first.ExecuteReaderAsync(cancellationToken))
        {
            var index = new Dictionary<(int, long), int>(record.Partitions.Count);
            for (int i = 0; i < record.Partitions.Count; i++)
                index[(record.Partitions[i], record.Offsets[i])] = i;
            while (await reader.ReadAsync(cancellationToken))
                stored.Add((index[(reader.GetInt32(1), reader.GetInt64(2))], reader.GetInt64(0), reader.GetFieldValue<DateTime>(3)));
            await reader.NextResultAsync(cancellationToken);
            while (await reader.ReadAsync(cancellationToken))
            {
                var incident = new Incident
                {
                    Id = reader.GetInt64(0),
                    Entity = reader.GetString(1),
                    FirstAnomalyId = reader.GetInt64(2),
                    FirstAt = reader.GetFieldValue<DateTime>(3),
                    LastAt = reader.GetFieldValue<DateTime>(4),
                    Count = reader.GetInt64(5),
                    PeakScore = reader.GetDouble(6),
                    MinPValue = reader.GetDouble(7),
                    PeakAnomalyId = reader.GetInt64(8),
                    FeatureScores = JsonSerializer.Deserialize<Dictionary<string, double>>(reader.GetString(9)) ?? [],
                };
                open[incident.Entity] = incident;
            }
        }

        var anomalies = new List<IncidentAnomaly>(stored.Count);
        foreach (var (i, id, detectedAt) in stored)
        {
            if (record.Entities[i] is not { } entity)
                continue;
            anomalies.Add(new IncidentAnomaly(id, entity, record.EventTimes[i] ?? detectedAt, record.Scores[i], record.PValues[i],
                Features(record.Contributions[i])));
        }
        var changes = IncidentRules.Apply(open, anomalies, record.IncidentGap);
        AddWrites(rest, record, changes, returnClosed, stored.Count > 0 ? stored[0].DetectedAt : null);
        return changes;
    }

    /// <summary>Appends the writes of <paramref name="changes"/> (none: only the clocks and the close of quiet incidents);
    /// with <paramref name="returnClosed"/> the close returns the ids it closed (for alerts).</summary>
    /// <param name="detectedAt">detected_at of the rows the batch stored (all share it); needed when <paramref name="changes"/> assigns any.</param>
    public static void AddWrites(NpgsqlBatch batch, BatchRecord record, IncidentChanges? changes, bool returnClosed, DateTime? detectedAt = null)
    {
        var loaded = changes?.Incidents.Where(i => !i.IsNew).ToList() ?? [];
        if (loaded.Count > 0)
        {
            var update = new NpgsqlBatchCommand(UpdateLoaded);
            Add(update, loaded.Select(i => i.Id).ToArray(), loaded.Select(i => i.FirstAt).ToArray(), loaded.Select(i => i.LastAt).ToArray(),
                loaded.Select(i => i.Count).ToArray(), loaded.Select(i => i.PeakScore).ToArray(), loaded.Select(i => i.MinPValue).ToArray(),
                loaded.Select(i => i.PeakAnomalyId).ToArray(), loaded.Select(i => JsonSerializer.Serialize(i.FeatureScores)).ToArray(),
                loaded.Select(i => i.ClosedAt).ToArray());
            batch.BatchCommands.Add(update);
        }

        if (changes is { Assignments.Count: > 0 })
            AddOpenAndAssign(batch, record, changes, detectedAt ?? throw new ArgumentNullException(nameof(detectedAt)));
        if (record.Clocks.Count > 0)
        {
            var clocks = new NpgsqlBatchCommand(AdvanceClocks);
            Add(clocks, record.Detector, record.Topic, record.Clocks.Keys.ToArray(), record.Clocks.Values.ToArray());
            batch.BatchCommands.Add(clocks);
        }
        var close = new NpgsqlBatchCommand(returnClosed ? CloseQuiet + " RETURNING id" : CloseQuiet);
        Add(close, record.Detector, record.IncidentGap);
        batch.BatchCommands.Add(close);
    }

    private static void AddOpenAndAssign(NpgsqlBatch batch, BatchRecord record, IncidentChanges changes, DateTime detectedAt)
    {
        var opened = changes.Incidents.Where(i => i.IsNew).ToList();
        var assign = new NpgsqlBatchCommand(OpenAndAssign);
        Add(assign, record.Detector, opened.Select(i => i.Entity).ToArray(), opened.Select(i => i.FirstAnomalyId).ToArray(),
            opened.Select(i => i.FirstAt).ToArray(), opened.Select(i => i.LastAt).ToArray(), opened.Select(i => i.Count).ToArray(),
            opened.Select(i => i.PeakScore).ToArray(), opened.Select(i => i.MinPValue).ToArray(), opened.Select(i => i.PeakAnomalyId).ToArray(),
            opened.Select(i => JsonSerializer.Serialize(i.FeatureScores)).ToArray(), opened.Select(i => i.ClosedAt).ToArray(),
            changes.Assignments.Select(a => a.Anomaly.AnomalyId).ToArray(), changes.Assignments.Select(a => a.Incident.Id).ToArray(),
            changes.Assignments.Select(a => a.Incident.FirstAnomalyId).ToArray(), detectedAt);
        batch.BatchCommands.Add(assign);
    }

    /// <summary>The per-feature scores of a contributions column value ([{"feature","score"}...]); null scores left out.</summary>
    internal static KeyValuePair<string, double>[] Features(string contributions)
    {
        using var document = JsonDocument.Parse(contributions);
        var features = new List<KeyValuePair<string, double>>();
        foreach (var item in document.RootElement.EnumerateArray())
        {
            if (item.TryGetProperty("feature", out var name) && name.ValueKind == JsonValueKind.String
                && item.TryGetProperty("score", out var score) && score.ValueKind == JsonValueKind.Number)
            {
                features.Add(new(name.GetString()!, score.GetDouble()));
            }
        }
        return [.. features];
    }

    private static void Add(NpgsqlBatchCommand command, params object?[] values)
    {
        foreach (var value in values)
            command.Parameters.Add(new NpgsqlParameter { Value = value ?? DBNull.Value });
    }
}
