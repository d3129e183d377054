using Npgsql;

namespace AnomalyVae.Service.Storage;

/// <summary>
/// What one batch writes: its anomaly rows (column lists, reused between batches), the next offset of each
/// partition it covered, and its share of the window's scoring statistics.
/// </summary>
public sealed class BatchRecord
{
    public BatchRecord(string detector, string topic)
    {
        Detector = detector;
        Topic = topic;
    }

    public string Detector { get; }

    public string Topic { get; }

    public string ModelVersion { get; set; } = "";

    public double Threshold { get; set; }

    public List<int> Partitions { get; } = [];

    public List<long> Offsets { get; } = [];

    public List<string?> Entities { get; } = [];

    public List<DateTime?> EventTimes { get; } = [];

    public List<double> Scores { get; } = [];

    public List<double> PValues { get; } = [];

    /// <summary>jsonb text: [{"feature":..,"score":..}, ...] largest first.</summary>
    public List<string> Contributions { get; } = [];

    /// <summary>jsonb text of the event (an object).</summary>
    public List<string> Events { get; } = [];

    public List<int> OffsetPartitions { get; } = [];

    public List<long> NextOffsets { get; } = [];

    public DateTime WindowStart { get; set; }

    public int WindowSeconds { get; set; }

    public long EventsScored { get; set; }

    public long EventsFlagged => Scores.Count;

    public long EventsDeadLettered { get; set; }

    /// <summary>Window quantiles as this process has seen them; null when it scored nothing in the window.</summary>
    public (double P50, double P90, double P99, double Max)? Quantiles { get; set; }

    public void Clear()
    {
        Partitions.Clear();
        Offsets.Clear();
        Entities.Clear();
        EventTimes.Clear();
        Scores.Clear();
        PValues.Clear();
        Contributions.Clear();
        Events.Clear();
        OffsetPartitions.Clear();
        NextOffsets.Clear();
        EventsScored = 0;
        EventsDeadLettered = 0;
        Quantiles = null;
    }
}

/// <summary>
/// Writes a batch to PostgreSQL in one transaction: the anomaly rows (idempotent on the event's Kafka
/// coordinates), the partitions' next offsets, the window statistics. Either all of it is visible or none,
/// which is what makes a crash at any instant lose and duplicate nothing.
/// </summary>
public sealed class AnomalyStore(NpgsqlDataSource dataSource)
{
    // One statement for any number of rows: arrays in, unnest out. Flagged rows are a small fraction of a batch,
    // so a temp table + binary COPY would only add round trips here.
    private const string InsertAnomalies = """
        INSERT INTO anomalies (detector, topic, "partition", "offset", entity, event_time, score, p_value, threshold, model_version, contributions, event)
        SELECT $1, $2, u.p, u.o, u.e, u.t, u.s, u.pv, $3, $4, u.c::jsonb, u.ev::jsonb
        FROM unnest($5::integer[], $6::bigint[], $7::text[], $8::timestamptz[], $9::float8[], $10::float8[], $11::text[], $12::text[])
             AS u(p, o, e, t, s, pv, c, ev)
        ON CONFLICT ON CONSTRAINT anomalies_event_key DO NOTHING
        """;

    // Offsets only move forward, and the batch's statistics count only when its offsets moved: a batch applied
    // twice (its COMMIT acknowledgement lost and retried, or a stale owner after a rebalance) counts once.
    private const string UpsertOffsetsAndStats = """
        WITH moved AS (
          INSERT INTO consumer_offsets AS c (detector, topic, "partition", next_offset, updated_at)
          SELECT $1, $2, u.p, u.o, now() FROM unnest($3::integer[], $4::bigint[]) AS u(p, o)
          ON CONFLICT (detector, topic, "partition") DO UPDATE SET next_offset = excluded.next_offset, updated_at = excluded.updated_at
          WHERE c.next_offset < excluded.next_offset
          RETURNING 1)
        INSERT INTO scoring_stats AS s (detector, window_start, window_seconds, model_version, events_scored, events_flagged,
                                        events_dead_lettered, score_p50, score_p90, score_p99, score_max, updated_at)
        SELECT $1, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, now() WHERE EXISTS (SELECT 1 FROM moved)
        ON CONFLICT (detector, window_start, model_version) DO UPDATE SET
          events_scored = s.events_scored + excluded.events_scored,
          events_flagged = s.events_flagged + excluded.events_flagged,
          events_dead_lettered = s.events_dead_lettered + excluded.events_dead_lettered,
          -- Quantiles are those of the window as the writing process saw it (approximate across processes and
          -- restarts), kept when this batch scored nothing; the maximum is exact.
          score_p50 = COALESCE(excluded.score_p50, s.score_p50),
          score_p90 = COALESCE(excluded.score_p90, s.score_p90),
          score_p99 = COALESCE(excluded.score_p99, s.score_p99),
          score_max = CASE WHEN excluded.score_p50 IS NULL THEN s.score_max ELSE GREATEST(s.score_max, excluded.score_max) END,
          updated_at = excluded.updated_at
        """;

    /// <summary>Commits <paramref name="record"/> in one transaction (one round trip for the statements).</summary>
    public async Task WriteAsync(BatchRecord record, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        await using var batch = new NpgsqlBatch(connection, transaction);
        if (record.Scores.Count > 0)
        {
            var insert = new NpgsqlBatchCommand(InsertAnomalies);
            Add(insert, record.Detector, record.Topic, record.Threshold, record.ModelVersion, record.Partitions, record.Offsets,
                record.Entities, record.EventTimes, record.Scores, record.PValues, record.Contributions, record.Events);
            batch.BatchCommands.Add(insert);
        }
        if (record.OffsetPartitions.Count > 0)
        {
            var offsets = new NpgsqlBatchCommand(UpsertOffsetsAndStats);
            var q = record.Quantiles;
            Add(offsets, record.Detector, record.Topic, record.OffsetPartitions, record.NextOffsets, record.WindowStart, record.WindowSeconds,
                record.ModelVersion, record.EventsScored, record.EventsFlagged, record.EventsDeadLettered, q?.P50, q?.P90, q?.P99, q?.Max);
            batch.BatchCommands.Add(offsets);
        }
        if (batch.BatchCommands.Count > 0)
            await batch.ExecuteNonQueryAsync(cancellationToken);
        await transaction.CommitAsync(cancellationToken);
    }

    /// <summary>Whether the database answers (readiness).</summary>
    public async Task<bool> PingAsync(CancellationToken cancellationToken)
    {
        try
        {
            await using var command = dataSource.CreateCommand("SELECT 1");
            await command.ExecuteScalarAsync(cancellationToken);
            return true;
        }
        catch (Exception e) when (e is NpgsqlException or TimeoutException or InvalidOperationException)
        {
            return false;
        }
    }

    private static void Add(NpgsqlBatchCommand command, params object?[] values)
    {
        foreach (var value in values)
            command.Parameters.Add(new NpgsqlParameter { Value = value ?? DBNull.Value });
    }
}
