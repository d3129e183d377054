using Npgsql;

namespace AnomalyVae.Storage;

/// <summary>
/// The window state one batch writes (<c>window_state</c>): per touched (partition, entity) its packed steps,
/// as column lists and one byte buffer reused between batches (no allocation per entity).
/// </summary>
public sealed class WindowStateRows
{
    private byte[] _packed = new byte[64 * 1024];

    /// <summary>Fingerprint of the feature encoding (see migration 0008); one per batch (one model version).</summary>
    public string Spec { get; set; } = "";

    public List<int> Partitions { get; } = [];

    public List<string> Entities { get; } = [];

    public List<long> LastOffsets { get; } = [];

    /// <summary>Where each entity's packed state starts in <see cref="Packed"/>, and its length.</summary>
    public List<int> Starts { get; } = [];

    public List<int> Lengths { get; } = [];

    public int PackedLength { get; private set; }

    public ReadOnlyMemory<byte> Packed => _packed.AsMemory(0, PackedLength);

    public int Count => Partitions.Count;

    /// <summary>Reserves <paramref name="length"/> bytes for one entity's state and returns them to be filled.</summary>
    public Span<byte> Add(int partition, string entity, long lastOffset, int length)
    {
        if (PackedLength + length > _packed.Length)
            Array.Resize(ref _packed, Math.Max(_packed.Length * 2, PackedLength + length));
        Partitions.Add(partition);
        Entities.Add(entity);
        LastOffsets.Add(lastOffset);
        Starts.Add(PackedLength);
        Lengths.Add(length);
        var span = _packed.AsSpan(PackedLength, length);
        PackedLength += length;
        return span;
    }

    public void Clear()
    {
        Partitions.Clear();
        Entities.Clear();
        LastOffsets.Clear();
        Starts.Clear();
        Lengths.Clear();
        PackedLength = 0;
    }
}

/// <summary>One stored entity state.</summary>
public readonly record struct WindowStateRow(int Partition, string Entity, long LastOffset, byte[] State);

/// <summary>
/// Reads and writes <c>window_state</c>. Writes go into the batch transaction (<see cref="AnomalyStore"/>) before
/// the offsets move, guarded by them: a batch applied a second time (a lost COMMIT acknowledgement, a stale owner
/// after a rebalance) does not overwrite the state, exactly as it does not count its statistics twice.
/// </summary>
public sealed class WindowStateStore(NpgsqlDataSource dataSource)
{
    // Runs before the offsets upsert of the same transaction, so consumer_offsets still holds the offsets before
    // this batch; FOR UPDATE takes their row locks first, so a concurrent writer of the same partitions (a stale
    // owner) waits and then sees the moved offsets. A partition's entities are written only if the batch moves its
    // offset. $1 detector, $2 topic, $3/$4 the batch's partitions and next offsets, $5 spec, $6.. the rows.
    private const string Upsert = """
        WITH held AS MATERIALIZED (
          SELECT "partition", next_offset FROM consumer_offsets
          WHERE detector = $1 AND topic = $2 AND "partition" = ANY($3) FOR UPDATE)
        INSERT INTO window_state AS w (detector, topic, "partition", entity, spec, last_offset, state, updated_at)
        SELECT $1, $2, u.p, u.e, $5, u.lo, substring($11::bytea FROM u.s + 1 FOR u.l), now()
        FROM unnest($6::integer[], $7::text[], $8::bigint[], $9::integer[], $10::integer[]) AS u(p, e, lo, s, l)
        JOIN unnest($3::integer[], $4::bigint[]) AS b(p, next) ON b.p = u.p
        LEFT JOIN held h ON h."partition" = u.p
        WHERE h.next_offset IS NULL OR h.next_offset < b.next
        ON CONFLICT (detector, topic, "partition", entity) DO UPDATE SET
          spec = excluded.spec, last_offset = excluded.last_offset, state = excluded.state, updated_at = excluded.updated_at
        """;

    /// <summary>The statement that writes <paramref name="record"/>'s window state, for its transaction.</summary>
    internal static NpgsqlBatchCommand Command(BatchRecord record)
    {
        var rows = record.WindowState;
        var command = new NpgsqlBatchCommand(Upsert);
        foreach (var value in (ReadOnlySpan<object>)[record.Detector, record.Topic, record.OffsetPartitions, record.NextOffsets, rows.Spec,
                     rows.Partitions, rows.Entities, rows.LastOffsets, rows.Starts, rows.Lengths, rows.Packed])
            command.Parameters.Add(new NpgsqlParameter { Value = value });
        return command;
    }

    /// <summary>The stored state of whole partitions (at most <paramref name="limit"/> entities, newest first),
    /// written with encoding <paramref name="spec"/>.</summary>
    public async Task<List<WindowStateRow>> LoadPartitionsAsync(string detector, string topic, IReadOnlyCollection<int> partitions, string spec,
        int limit, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand(
            """
            SELECT "partition", entity, last_offset, state FROM window_state
            WHERE detector = $1 AND topic = $2 AND "partition" = ANY($3) AND spec = $4
            ORDER BY updated_at DESC LIMIT $5
            """);
        Add(command, detector, topic, partitions.ToArray(), spec, (long)limit);
        return await ReadAsync(command, cancellationToken);
    }

    /// <summary>The stored state of the given (partition, entity) pairs that have one (one query).</summary>
    public async Task<List<WindowStateRow>> LoadEntitiesAsync(string detector, string topic, IReadOnlyList<int> partitions, IReadOnlyList<string> entities,
        string spec, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand(
            """
            SELECT w."partition", w.entity, w.last_offset, w.state
            FROM unnest($3::integer[], $4::text[]) AS u(p, e)
            JOIN window_state w ON w.detector = $1 AND w.topic = $2 AND w."partition" = u.p AND w.entity = u.e
            WHERE w.spec = $5
            """);
        Add(command, detector, topic, partitions, entities, spec);
        return await ReadAsync(command, cancellationToken);
    }

    private static async Task<List<WindowStateRow>> ReadAsync(NpgsqlCommand command, CancellationToken cancellationToken)
    {
        var rows = new List<WindowStateRow>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
            rows.Add(new WindowStateRow(reader.GetInt32(0), reader.GetString(1), reader.GetInt64(2), reader.GetFieldValue<byte[]>(3)));
        return rows;
    }

    private static void Add(NpgsqlCommand command, params object[] values)
    {
        foreach (var value in values)
            command.Parameters.Add(new NpgsqlParameter { Value = value });
    }
}
