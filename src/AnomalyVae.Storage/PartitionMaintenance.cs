using System.Globalization;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;

namespace AnomalyVae.Storage;

/// <summary>One partition of a partitioned table: its name and range [From, To) (From null: MINVALUE).</summary>
public sealed record PartitionInfo(string Table, string Name, DateTimeOffset? From, DateTimeOffset To, long EstimatedRows);

/// <summary>What one maintenance run did.</summary>
public sealed record MaintenanceResult(IReadOnlyList<PartitionInfo> Created, IReadOnlyList<PartitionInfo> Dropped);

/// <summary>
/// Keeps the daily partitions of <c>anomalies</c> and <c>scoring_stats</c> (migration 0009): creates those of today and
/// the next <see cref="StorageOptions.PartitionsAhead"/> days, and drops every partition whose whole range is older than
/// the table's retention (DROP TABLE, never DELETE). Dropping anomalies also deletes their feedback and the incidents
/// closed before the cut-off, in the same transaction. Runs in serve (hourly) and as <c>anomalyvae partitions maintain</c>;
/// several at once are serialized by an advisory lock. The clock is a <see cref="TimeProvider"/>, so tests decide
/// what "expired" means.
/// </summary>
/// <remarks>Not pg_partman: its maintenance reads the database's clock (retention could not be tested with a clock we
/// control) and it needs an extension installed by a superuser on every server, while this is a few statements.</remarks>
public sealed class PartitionMaintenance(NpgsqlDataSource dataSource, StorageOptions options, TimeProvider? time = null, ILogger? logger = null)
{
    /// <summary>The partitioned tables (migration 0009), each partitioned by one timestamptz column into UTC days.</summary>
    public static readonly IReadOnlyList<string> Tables = ["anomalies", "scoring_stats"];

    /// <summary>Key of the advisory lock that serializes maintenance runs ("AnomPart" in ASCII).</summary>
    public const long AdvisoryLockKey = 0x416E_6F6D_5061_7274;

    private static readonly TimeSpan Day = TimeSpan.FromDays(1);

    private readonly TimeProvider _time = time ?? TimeProvider.System;
    private readonly ILogger _logger = logger ?? NullLogger.Instance;

    // A partition's bounds as PostgreSQL prints them (FOR VALUES FROM ('...') TO ('...'), with the UTC offset), cast
    // back in the same session. reltuples is the planner's row estimate (-1 before the first ANALYZE).
    private const string ListSql = """
        SELECT c.relname,
               (regexp_match(b, 'FROM \(''([^'']+)''\)'))[1]::timestamptz,
               (regexp_match(b, 'TO \(''([^'']+)''\)'))[1]::timestamptz,
               greatest(c.reltuples, 0)::bigint
        FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        CROSS JOIN LATERAL pg_get_expr(c.relpartbound, c.oid) AS b
        WHERE i.inhparent = $1::regclass
        ORDER BY 3
        """;

    /// <summary>The partitions of <paramref name="table"/>, oldest first.</summary>
    public async Task<IReadOnlyList<PartitionInfo>> ListAsync(string table, CancellationToken cancellationToken = default)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        return await ListAsync(connection, null, table, cancellationToken);
    }

    /// <summary>Creates the missing partitions from today to today + PartitionsAhead and drops the expired ones.</summary>
    public async Task<MaintenanceResult> RunAsync(CancellationToken cancellationToken = default)
    {
        var now = _time.GetUtcNow();
        var today = new DateTimeOffset(now.UtcDateTime.Date, TimeSpan.Zero);
        var created = new List<PartitionInfo>();
        var dropped = new List<PartitionInfo>();
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        foreach (var table in Tables)
        {
            await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
            // Waiting for another maintenance run is fine; waiting long for the table lock (DDL needs it) is not:
            // the run gives up and the next one tries again, rather than queueing every insert behind it.
            await ExecuteAsync(connection, transaction, $"SELECT pg_advisory_xact_lock({AdvisoryLockKey}); SET LOCAL lock_timeout = '10s'", cancellationToken);
            var partitions = await ListAsync(connection, transaction, table, cancellationToken);

            for (var day = today; day <= today.AddDays(options.PartitionsAhead); day += Day)
            {
                var end = day + Day;
                if (partitions.Any(p => (p.From is null || p.From < end) && p.To > day))
                    continue; // covered (or overlapped, e.g. by the legacy partition) already
                var partition = new PartitionInfo(table, $"{table}_p{day.ToString("yyyyMMdd", CultureInfo.InvariantCulture)}", day, end, 0);
                await ExecuteAsync(connection, transaction,
                    $"CREATE TABLE \"{partition.Name}\" PARTITION OF {table} FOR VALUES FROM ('{Literal(day)}') TO ('{Literal(end)}')", cancellationToken);
                created.Add(partition);
            }

            if (Retention(table) is { } retention)
            {
                var cutoff = now - retention;
                foreach (var partition in partitions.Where(p => p.To <= cutoff))
                {
                    if (table == "anomalies")
                    {
                        // Feedback points at anomalies without a foreign key (migration 0009): it goes with them.
                        await ExecuteAsync(connection, transaction,
                            $"DELETE FROM anomaly_feedback f USING \"{partition.Name}\" a WHERE f.anomaly_id = a.id", cancellationToken);
                    }
                    await ExecuteAsync(connection, transaction, $"DROP TABLE \"{partition.Name}\"", cancellationToken);
                    dropped.Add(partition);
                }
                if (table == "anomalies")
                {
                    // Incidents are few (one per run of anomalies) and must stay one table for incidents_open_key; the
                    // closed ones older than the retention lost their anomalies and go as rows.
                    await using var incidents = new NpgsqlCommand("DELETE FROM incidents WHERE closed_at < $1", connection, transaction);
                    incidents.Parameters.Add(new NpgsqlParameter<DateTime> { TypedValue = cutoff.UtcDateTime });
                    await incidents.ExecuteNonQueryAsync(cancellationToken);
                }
            }
            await transaction.CommitAsync(cancellationToken);
        }
        foreach (var p in created)
            _logger.LogInformation("Created partition {Partition} for [{From:O}, {To:O})", p.Name, p.From, p.To);
        foreach (var p in dropped)
            _logger.LogInformation("Dropped expired partition {Partition} (rows before {To:O}, about {Rows} rows)", p.Name, p.To, p.EstimatedRows);
        return new MaintenanceResult(created, dropped);
    }

    private TimeSpan? Retention(string table) => table switch
    {
        "anomalies" => options.Retention.Anomalies,
        "scoring_stats" => options.Retention.ScoringStats,
        _ => null,
    };

    private static string Literal(DateTimeOffset time) => time.UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss'+00'", CultureInfo.InvariantCulture);

    private static async Task<IReadOnlyList<PartitionInfo>> ListAsync(NpgsqlConnection connection, NpgsqlTransaction? transaction, string table,
        CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(ListSql, connection, transaction);
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = table });
        var partitions = new List<PartitionInfo>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            DateTimeOffset? from = reader.IsDBNull(1) ? null : new DateTimeOffset(reader.GetFieldValue<DateTime>(1), TimeSpan.Zero);
            partitions.Add(new PartitionInfo(table, reader.GetString(0), from, new DateTimeOffset(reader.GetFieldValue<DateTime>(2), TimeSpan.Zero),
                reader.GetInt64(3)));
        }
        return partitions;
    }

    private static async Task ExecuteAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, string sql, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(sql, connection, transaction);
        await command.ExecuteNonQueryAsync(cancellationToken);
    }
}
