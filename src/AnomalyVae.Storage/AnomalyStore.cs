using AnomalyVae.Events;
using AnomalyVae.Model;
using Npgsql;

namespace AnomalyVae.Storage;

/// <summary>
/// The events of one batch admitted to a retraining sample (<c>training_sample</c> or <c>recent_events</c>), as
/// column lists reused between batches. Which events are admitted, and the random draw that picks a reservoir slot
/// once it is full, are decided when the batch is built, so a retried commit writes the same rows.
/// </summary>
public sealed class SampleRows
{
    public List<int> Partitions { get; } = [];

    public List<long> Offsets { get; } = [];

    public List<DateTime?> EventTimes { get; } = [];

    public List<double> Scores { get; } = [];

    public List<bool> Flagged { get; } = [];

    /// <summary>jsonb text of the event (see <see cref="EventJson"/>).</summary>
    public List<string> Events { get; } = [];

    /// <summary>Uniform draws in [0, 1): the reservoir slot of an admission once the reservoir is full.</summary>
    public List<double> Draws { get; } = [];

    /// <summary>The raw payloads behind <see cref="Events"/> (for the base64 fallback; not written).</summary>
    public List<byte[]> Payloads { get; } = [];

    /// <summary>jsonb text of a windowed detector's window history of the event (migration 0010); null for
    /// per-event detectors.</summary>
    public List<string?> Histories { get; } = [];

    public int Count => Partitions.Count;

    public void Add(int partition, long offset, DateTime? eventTime, double score, bool flagged, byte[] payload, double draw,
        string? history = null)
    {
        Histories.Add(history);
        Partitions.Add(partition);
        Offsets.Add(offset);
        EventTimes.Add(eventTime);
        Scores.Add(score);
        Flagged.Add(flagged);
        Events.Add(EventJson.ForJsonb(payload));
        Payloads.Add(payload);
        Draws.Add(draw);
    }

    public void Clear()
    {
        Partitions.Clear();
        Offsets.Clear();
        EventTimes.Clear();
        Scores.Clear();
        Flagged.Clear();
        Events.Clear();
        Draws.Clear();
        Payloads.Clear();
        Histories.Clear();
    }
}

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

    /// <summary>jsonb text of a windowed detector's window history of the event (migration 0010); null otherwise.</summary>
    public List<string?> Histories { get; } = [];

    public List<int> OffsetPartitions { get; } = [];

    public List<long> NextOffsets { get; } = [];

    public DateTime WindowStart { get; set; }

    public int WindowSeconds { get; set; }

    public long EventsScored { get; set; }

    public long EventsFlagged => Scores.Count;

    public long EventsDeadLettered { get; set; }

    /// <summary>Window quantiles as this process has seen them; null when it scored nothing in the window.</summary>
    public (double P50, double P90, double P99, double Max)? Quantiles { get; set; }

    /// <summary>This batch's scored events per calibration score bin (<see cref="ScoreDrift"/>); added to the window's.</summary>
    public long[] ScoreBins { get; } = new long[ScoreDrift.BinCount];

    /// <summary>Slots of the training-sample reservoir (Retraining:SampleSize); 0 = not sampled.</summary>
    public int TrainingSampleSize { get; set; }

    /// <summary>Slots of the recent-events ring (Retraining:RecentSize); 0 = not sampled.</summary>
    public int RecentSize { get; set; }

    /// <summary>Events scored as normal admitted to <c>training_sample</c>.</summary>
    public SampleRows Training { get; } = new();

    /// <summary>Scored events admitted to <c>recent_events</c>.</summary>
    public SampleRows Recent { get; } = new();

    /// <summary>The detector's incident gap (Detectors:N:IncidentGap); zero turns incidents off. Set once per batch object.</summary>
    public TimeSpan IncidentGap { get; set; }

    /// <summary>Per partition, the newest event time this batch scored (UTC; none when no event carried one): what
    /// moves the detector's clock that closes quiet incidents.</summary>
    public Dictionary<int, DateTime> Clocks { get; } = [];

    /// <summary>A windowed detector's touched entity states (<see cref="WindowStateStore"/>); empty otherwise.</summary>
    public WindowStateRows WindowState { get; } = new();

    /// <summary>Notes a scored event's time in <see cref="Clocks"/>.</summary>
    public void AdvanceClock(int partition, DateTime eventTime)
    {
        if (!Clocks.TryGetValue(partition, out var clock) || eventTime > clock)
            Clocks[partition] = eventTime;
    }

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
        Histories.Clear();
        OffsetPartitions.Clear();
        NextOffsets.Clear();
        EventsScored = 0;
        EventsDeadLettered = 0;
        Quantiles = null;
        Array.Clear(ScoreBins);
        Training.Clear();
        Recent.Clear();
        Clocks.Clear();
        WindowState.Clear();
    }
}

/// <summary>
/// Writes a batch to PostgreSQL in one transaction: the anomaly rows (fenced by the partitions' committed offsets,
/// so a replay inserts none), the events admitted to the retraining samples, the partitions' next offsets, the window statistics. Either all of it is visible or none,
/// which is what makes a crash at any instant lose and duplicate nothing.
/// </summary>
/// <param name="dataSource">The database.</param>
/// <param name="time">The clock that stamps detected_at (the partition key of anomalies); the system clock when null.</param>
public sealed class AnomalyStore(NpgsqlDataSource dataSource, TimeProvider? time = null)
{
    private readonly TimeProvider _time = time ?? TimeProvider.System;

    // One statement for any number of rows: arrays in, unnest out. Flagged rows are a small fraction of a batch,
    // so a temp table + binary COPY would only add round trips here.
    // Fencing (what makes a replay insert nothing, across partitions of the table too): "fence" takes the row lock of
    // each of the batch's partitions in consumer_offsets (creating the row, at the batch's first offset, where none
    // exists yet) and reads its committed next offset; only rows at or after it are inserted. Offsets only move
    // forward and are written in this same transaction, so a row below the committed next offset was stored by the
    // transaction that moved it there; a concurrent writer of the same partition (a stale owner after a rebalance)
    // waits on the lock and then reads the offset that writer committed (READ COMMITTED re-reads the locked row).
    // ON CONFLICT DO NOTHING without a target still honours the legacy partition's old unique key (migration 0009).
    // $13 is detected_at, the partition key: the writer's clock (TimeProvider), the same for every row of the batch.
    private const string InsertAnomalies = """
        WITH fence AS (
          INSERT INTO consumer_offsets AS c (detector, topic, "partition", next_offset, updated_at)
          SELECT $1, $2, u.p, min(u.o), now() FROM unnest($5::integer[], $6::bigint[]) AS u(p, o) GROUP BY u.p ORDER BY u.p
          ON CONFLICT (detector, topic, "partition") DO UPDATE SET next_offset = c.next_offset
          RETURNING c."partition", c.next_offset)
        INSERT INTO anomalies (detector, topic, "partition", "offset", entity, event_time, detected_at, score, p_value, threshold, model_version, contributions, event, history)
        SELECT $1, $2, u.p, u.o, u.e, u.t, $13, u.s, u.pv, $3, $4, u.c::jsonb, u.ev::jsonb, u.h::jsonb
        FROM unnest($5::integer[], $6::bigint[], $7::text[], $8::timestamptz[], $9::float8[], $10::float8[], $11::text[], $12::text[], $14::text[])
             AS u(p, o, e, t, s, pv, c, ev, h)
             JOIN fence f ON f."partition" = u.p
        WHERE u.o >= f.next_offset
        ON CONFLICT DO NOTHING
        """;

    // Offsets only move forward, and the batch's statistics and sample admissions count only when its offsets moved:
    // a batch applied twice (its COMMIT acknowledgement lost and retried, or a stale owner after a rebalance) counts
    // and admits once. One statement, so the condition is the offset upsert itself (under its row locks).
    // Samples: the counter row is taken with INSERT .. ON CONFLICT DO UPDATE .. RETURNING, which locks it, so
    // consumer-group members sharing a detector take admissions one after the other and never hand out a slot
    // twice. Reservoir: the i-th admission (0-based, over all time) takes slot i while it fills, afterwards the slot
    // its draw picks uniformly, so an entry survives about SampleSize later admissions. Ring: slot i mod RecentSize.
    // Two admissions of one batch can land on the same slot; the later one wins, as it would one batch later.
    // Parameters: $1 detector, $2 topic, $3/$4 partitions and next offsets, $5..$15 window statistics,
    // $16 reservoir slots, $17 its admissions, $18..$23 their rows, $24 ring slots, $25 its admissions, $26..$31 rows,
    // $32 and $33 the window histories of the reservoir's and the ring's rows (null elements for per-event detectors).
    private const string UpsertOffsetsSamplesAndStats = """
        WITH moved AS (
          INSERT INTO consumer_offsets AS c (detector, topic, "partition", next_offset, updated_at)
          SELECT $1, $2, u.p, u.o, now() FROM unnest($3::integer[], $4::bigint[]) AS u(p, o)
          ON CONFLICT (detector, topic, "partition") DO UPDATE SET next_offset = excluded.next_offset, updated_at = excluded.updated_at
          WHERE c.next_offset < excluded.next_offset
          RETURNING 1),
        counter AS (
          INSERT INTO sample_counters AS c (detector, training_admitted, recent_admitted)
          SELECT $1, $17, $25 WHERE $17 + $25 > 0 AND EXISTS (SELECT 1 FROM moved)
          ON CONFLICT (detector) DO UPDATE SET training_admitted = c.training_admitted + excluded.training_admitted,
                                               recent_admitted = c.recent_admitted + excluded.recent_admitted
          RETURNING c.training_admitted - $17 AS training_first, c.recent_admitted - $25 AS recent_first),
        training AS (
          INSERT INTO training_sample AS t (detector, slot, topic, "partition", "offset", event_time, sampled_at, model_version, score, event, history)
          SELECT DISTINCT ON (x.slot) $1, x.slot, $2, x.p, x.o, x.et, now(), $7, x.s, x.ev::jsonb, x.h::jsonb
          FROM (SELECT (CASE WHEN c.training_first + u.i - 1 < $16 THEN c.training_first + u.i - 1 ELSE floor(u.r * $16) END)::integer AS slot, u.*
                FROM counter c, unnest($18::integer[], $19::bigint[], $20::timestamptz[], $21::float8[], $22::text[], $23::float8[], $32::text[])
                     WITH ORDINALITY AS u(p, o, et, s, ev, r, h, i)) x
          ORDER BY x.slot, x.i DESC
          ON CONFLICT (detector, slot) DO UPDATE SET topic = excluded.topic, "partition" = excluded."partition", "offset" = excluded."offset",
            event_time = excluded.event_time, sampled_at = excluded.sampled_at, model_version = excluded.model_version,
            score = excluded.score, event = excluded.event, history = excluded.history),
        recent AS (
          INSERT INTO recent_events AS t (detector, slot, topic, "partition", "offset", event_time, sampled_at, model_version, score, flagged, event, history)
          SELECT DISTINCT ON (x.slot) $1, x.slot, $2, x.p, x.o, x.et, now(), $7, x.s, x.f, x.ev::jsonb, x.h::jsonb
          FROM (SELECT ((c.recent_first + u.i - 1) % $24)::integer AS slot, u.*
                FROM counter c, unnest($26::integer[], $27::bigint[], $28::timestamptz[], $29::float8[], $30::boolean[], $31::text[], $33::text[])
                     WITH ORDINALITY AS u(p, o, et, s, f, ev, h, i)) x
          ORDER BY x.slot, x.i DESC
          ON CONFLICT (detector, slot) DO UPDATE SET topic = excluded.topic, "partition" = excluded."partition", "offset" = excluded."offset",
            event_time = excluded.event_time, sampled_at = excluded.sampled_at, model_version = excluded.model_version,
            score = excluded.score, flagged = excluded.flagged, event = excluded.event, history = excluded.history)
        INSERT INTO scoring_stats AS s (detector, window_start, window_seconds, model_version, events_scored, events_flagged,
                                        events_dead_lettered, score_p50, score_p90, score_p99, score_max, score_bins, updated_at)
        SELECT $1, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, now() WHERE EXISTS (SELECT 1 FROM moved)
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
          -- Bin counts add up element-wise (a row from before migration 0006 has none: it starts from this batch's).
          score_bins = CASE WHEN s.score_bins IS NULL THEN excluded.score_bins ELSE
            ARRAY(SELECT a + b FROM unnest(s.score_bins, excluded.score_bins) WITH ORDINALITY AS x(a, b, k) ORDER BY k) END,
          updated_at = excluded.updated_at
        """;

    private static readonly SampleRows NoRows = new();

    /// <summary>Commits <paramref name="record"/> in one transaction (one round trip for the statements).</summary>
    public Task WriteAsync(BatchRecord record, CancellationToken cancellationToken) => WriteAsync(record, null, cancellationToken);

    /// <summary>
    /// Commits <paramref name="record"/> in one transaction; <paramref name="beforeCommit"/>, when given, is called with the
    /// incident transitions of the transaction (empty when it opened or closed none, or incidents are off) after every
    /// statement ran and before COMMIT: what it sends is out before the batch counts as done (at-least-once), and when it
    /// throws the transaction rolls back. It costs one more round trip when the batch opened or closed an incident.
    /// </summary>
    public async Task WriteAsync(BatchRecord record, Func<IReadOnlyList<IncidentTransition>, CancellationToken, Task>? beforeCommit,
        CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        await using var batch = new NpgsqlBatch(connection, transaction);
        bool incidents = record.IncidentGap > TimeSpan.Zero;
        bool alerts = beforeCommit is not null && incidents;
        IncidentChanges? changes = null;
        if (record.Scores.Count > 0)
        {
            var insert = new NpgsqlBatchCommand(incidents ? InsertAnomalies + IncidentStore.Returning : InsertAnomalies);
            Add(insert, record.Detector, record.Topic, record.Threshold, record.ModelVersion, record.Partitions, record.Offsets,
                record.Entities, record.EventTimes, record.Scores, record.PValues, record.Contributions, record.Events,
                _time.GetUtcNow().UtcDateTime, record.Histories);
            // With incidents the insert runs first, on its own round trip: the rows it stored are grouped into incidents.
            if (incidents)
                changes = await IncidentStore.InsertAndGroupAsync(connection, transaction, insert, record, batch, alerts, cancellationToken);
            else
                batch.BatchCommands.Add(insert);
        }
        else if (incidents)
        {
            IncidentStore.AddWrites(batch, record, null, alerts);
        }
        // The window state goes before the offsets: its guard reads the offsets as they were before this batch.
        if (record.WindowState.Count > 0 && record.OffsetPartitions.Count > 0)
            batch.BatchCommands.Add(WindowStateStore.Command(record));
        if (record.OffsetPartitions.Count > 0)
        {
            var offsets = new NpgsqlBatchCommand(UpsertOffsetsSamplesAndStats);
            var q = record.Quantiles;
            // A sample of size 0 is off: none of its rows are written (and slot arithmetic never divides by 0).
            var t = record.TrainingSampleSize > 0 ? record.Training : NoRows;
            var r = record.RecentSize > 0 ? record.Recent : NoRows;
            Add(offsets, record.Detector, record.Topic, record.OffsetPartitions, record.NextOffsets, record.WindowStart, record.WindowSeconds,
                record.ModelVersion, record.EventsScored, record.EventsFlagged, record.EventsDeadLettered, q?.P50, q?.P90, q?.P99, q?.Max,
                record.ScoreBins,
                (long)record.TrainingSampleSize, (long)t.Count, t.Partitions, t.Offsets, t.EventTimes, t.Scores, t.Events, t.Draws,
                (long)record.RecentSize, (long)r.Count, r.Partitions, r.Offsets, r.EventTimes, r.Scores, r.Flagged, r.Events,
                t.Histories, r.Histories);
            batch.BatchCommands.Add(offsets);
        }
        if (alerts)
        {
            // The only statement that returns rows here is the close of quiet incidents (RETURNING id).
            var closed = new List<long>();
            await using (var reader = await batch.ExecuteReaderAsync(cancellationToken))
            {
                do
                {
                    while (await reader.ReadAsync(cancellationToken))
                        closed.Add(reader.GetInt64(0));
                }
                while (await reader.NextResultAsync(cancellationToken));
            }
            // Closed by the rules (a later anomaly of the entity came after the gap): loaded incidents with a close time.
            closed.AddRange(changes?.Incidents.Where(i => !i.IsNew && i.ClosedAt is not null).Select(i => i.Id) ?? []);
            long[] opened = changes?.Incidents.Where(i => i.IsNew).Select(i => i.FirstAnomalyId).ToArray() ?? [];
            var transitions = await IncidentTransitions.ReadAsync(connection, transaction, record.Detector, [.. closed.Distinct()], opened,
                cancellationToken);
            await beforeCommit!(transitions, cancellationToken);
        }
        else
        {
            if (batch.BatchCommands.Count > 0)
                await batch.ExecuteNonQueryAsync(cancellationToken);
            if (beforeCommit is not null)
                await beforeCommit([], cancellationToken);
        }
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
