using Npgsql;

namespace AnomalyVae.Storage;

/// <summary>
/// Reads where a detector resumes each partition (table <c>consumer_offsets</c>). The offsets are written by
/// <see cref="AnomalyStore"/> in the transaction of each batch, so they never run ahead of or behind the rows.
/// </summary>
public sealed class OffsetStore(NpgsqlDataSource dataSource)
{
    /// <summary>The stored next offset of each of <paramref name="partitions"/> that has one.</summary>
    public async Task<IReadOnlyDictionary<int, long>> LoadAsync(string detector, string topic, IReadOnlyCollection<int> partitions,
        CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand(
            """SELECT "partition", next_offset FROM consumer_offsets WHERE detector = $1 AND topic = $2 AND "partition" = ANY($3)""");
        command.Parameters.Add(new NpgsqlParameter { Value = detector });
        command.Parameters.Add(new NpgsqlParameter { Value = topic });
        command.Parameters.Add(new NpgsqlParameter { Value = partitions.ToArray() });
        var offsets = new Dictionary<int, long>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
            offsets[reader.GetInt32(0)] = reader.GetInt64(1);
        return offsets;
    }
}
