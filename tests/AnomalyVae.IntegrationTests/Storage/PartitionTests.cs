using AnomalyVae.IntegrationTests.Infrastructure;
using AnomalyVae.Storage;
using Npgsql;

namespace AnomalyVae.IntegrationTests.Storage;

/// <summary>
/// Partitioned anomalies (migration 0009) against real PostgreSQL: the conversion of a database at 0007 keeps every row,
/// retention drops whole expired partitions by a clock the test sets, and a replayed batch inserts no second row even
/// when the clock crossed a partition boundary in between.
/// </summary>
[Collection(InfrastructureCollection.Name)]
public sealed class PartitionTests(TestInfrastructure infrastructure)
{
    private static readonly DateTimeOffset Today = new(DateTime.UtcNow.Date, TimeSpan.Zero);

    [Fact]
    public async Task Migrating_a_filled_database_at_0007_keeps_every_row_feedback_and_incident()
    {
        await WithDatabaseAsync("convert", async (dataSource, ct) =>
        {
            var upTo7 = SchemaMigrator.EmbeddedMigrations().Where(m => m.Version <= 7).ToList();
            await new SchemaMigrator(dataSource, upTo7).MigrateAsync(ct);
            await ExecuteAsync(dataSource, """
                INSERT INTO anomalies (detector, topic, "partition", "offset", entity, event_time, detected_at, score, p_value, threshold,
                                       model_version, contributions, event)
                SELECT 'd' || (g % 3), 't', g % 4, g, 'm' || (g % 17), now() - g * interval '7 minutes', now() - g * interval '5 minutes',
                       g * 0.5, 1.0 / (g + 1), 3, 'v1', jsonb_build_array(jsonb_build_object('feature', 'f' || (g % 5), 'score', g)),
                       jsonb_build_object('i', g)
                FROM generate_series(1, 3000) g;
                INSERT INTO incidents (detector, entity, first_anomaly_id, first_at, last_at, anomaly_count, peak_score, min_p_value,
                                       peak_anomaly_id, feature_scores, closed_at)
                VALUES ('d1', 'm1', 1, now() - interval '1 day', now() - interval '20 hours', 5, 9, 0.001, 18, '{"f1": 3}', now() - interval '19 hours'),
                       ('d2', 'm2', 2, now() - interval '2 hours', now() - interval '1 hour', 2, 4, 0.01, 2, '{"f2": 1}', NULL);
                UPDATE anomalies SET incident_id = (SELECT min(id) FROM incidents) WHERE entity = 'm1' AND detector = 'd1';
                INSERT INTO anomaly_feedback (anomaly_id, label, note, source)
                SELECT id, CASE WHEN id % 2 = 0 THEN 'true_positive' ELSE 'false_positive' END, 'n' || id, 'cli' FROM anomalies WHERE id % 11 = 0;
                INSERT INTO scoring_stats (detector, window_start, window_seconds, model_version, events_scored, events_flagged, score_bins)
                SELECT 'd' || (g % 3), date_trunc('minute', now()) - g * interval '1 minute', 60, 'v1', 100 + g, g % 50, array_fill(g::bigint, ARRAY[11])
                FROM generate_series(1, 500) g;
                """, ct);
            var before = await SnapshotAsync(dataSource, ct);
            Assert.Equal(3000L, before["anomalies"].Count);
            Assert.True(before["anomaly_feedback"].Count > 200);

            var applied = await new SchemaMigrator(dataSource).MigrateAsync(ct);
            Assert.Contains(applied, m => m.FileName == "0009_partitioned_anomalies.sql");

            var after = await SnapshotAsync(dataSource, ct);
            foreach (var (table, rows) in before)
                Assert.True(rows.Count == after[table].Count && rows.SequenceEqual(after[table]), $"{table} changed in the migration");
            Assert.Equal("p", await ScalarAsync<string>(dataSource, "SELECT relkind::text FROM pg_class WHERE relname = 'anomalies'", ct));
            Assert.Equal("p", await ScalarAsync<string>(dataSource, "SELECT relkind::text FROM pg_class WHERE relname = 'scoring_stats'", ct));
            // New rows continue the old id sequence and the queries see old and new rows together.
            long maxId = await ScalarAsync<long>(dataSource, "SELECT max(id) FROM anomalies", ct);
            await new AnomalyStore(dataSource).WriteAsync(Batch(nextOffset: 5001, offsets: [5000]), ct);
            Assert.True(await ScalarAsync<long>(dataSource, "SELECT max(id) FROM anomalies", ct) > maxId);
            var page = await new AnomalyQueries(dataSource).ListAsync(new AnomalyFilter(Limit: 1000), ct);
            Assert.Equal(1000, page.Items.Count);
            Assert.Equal(5000, (await new AnomalyQueries(dataSource).GetAsync(page.Items[0].Id, ct))!.Offset);
            Assert.NotNull(await new FeedbackStore(dataSource).AddAsync(11, FeedbackStore.TruePositive, null, "cli", ct));
            Assert.Null(await new FeedbackStore(dataSource).AddAsync(999_999, FeedbackStore.TruePositive, null, "cli", ct));
        }, CancellationToken.None);
    }

    [Fact]
    public async Task Retention_drops_the_partitions_older_than_it_by_the_clock_it_is_given_and_keeps_newer_ones()
    {
        await WithDatabaseAsync("retention", async (dataSource, ct) =>
        {
            await new SchemaMigrator(dataSource).MigrateAsync(ct);
            var clock = new ManualClock(Today.AddDays(10).AddHours(1));
            var options = new StorageOptions { PartitionsAhead = 3 };
            options.Retention.Anomalies = TimeSpan.FromDays(2);
            var maintenance = new PartitionMaintenance(dataSource, options, clock);
            var first = await maintenance.RunAsync(ct);
            // Today (day 10) and 3 days ahead are made; everything the migration made (up to day 8) is past the 2 days.
            Assert.Equal([.. Enumerable.Range(10, 4).Select(d => Name("anomalies", d)), .. Enumerable.Range(10, 4).Select(d => Name("scoring_stats", d))],
                first.Created.Select(p => p.Name));
            Assert.Contains(first.Dropped, p => p.Name == "anomalies_legacy");
            Assert.All(first.Dropped, p => Assert.True(p.Table == "anomalies" && p.To <= clock.Now - TimeSpan.FromDays(2), p.Name));
            Assert.Equal([.. Enumerable.Range(10, 4).Select(d => Name("anomalies", d))],
                await ColumnAsync<string>(dataSource, "SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhparent = 'anomalies'::regclass ORDER BY 1", ct));

            // An old row (day 10) with feedback and a closed incident, and a newer one (day 11).
            var store = new AnomalyStore(dataSource, clock);
            await store.WriteAsync(Batch(nextOffset: 11, offsets: [10]), ct);
            clock.Now = Today.AddDays(11).AddHours(12);
            await store.WriteAsync(Batch(nextOffset: 21, offsets: [20]), ct);
            await ExecuteAsync(dataSource, """
                INSERT INTO anomaly_feedback (anomaly_id, label, source) SELECT id, 'true_positive', 'cli' FROM anomalies;
                INSERT INTO incidents (detector, entity, first_anomaly_id, first_at, last_at, anomaly_count, peak_score, min_p_value,
                                       peak_anomaly_id, feature_scores, closed_at)
                SELECT 'd', 'old', min(id), min(detected_at), min(detected_at), 1, 1, 0.1, min(id), '{}', min(detected_at) + interval '5 minutes' FROM anomalies;
                """, ct);

            // Day 10's partition ends at day 11 00:00; with 2 days of retention it expires after day 13 00:00.
            clock.Now = Today.AddDays(12).AddHours(23);
            var early = await maintenance.RunAsync(ct);
            Assert.Empty(early.Dropped);
            Assert.Equal(2L, await ScalarAsync<long>(dataSource, "SELECT count(*) FROM anomalies", ct));

            clock.Now = Today.AddDays(13).AddMinutes(1);
            var result = await maintenance.RunAsync(ct);
            Assert.Equal([Name("anomalies", 10)], result.Dropped.Select(p => p.Name));
            Assert.Contains(result.Created, p => p.Name == Name("anomalies", 16));
            Assert.Equal([20L], await ColumnAsync<long>(dataSource, "SELECT \"offset\" FROM anomalies", ct));
            Assert.False(await ScalarAsync<bool>(dataSource, $"SELECT to_regclass('{Name("anomalies", 10)}') IS NOT NULL", ct));
            Assert.True(await ScalarAsync<bool>(dataSource, $"SELECT to_regclass('{Name("anomalies", 11)}') IS NOT NULL", ct));
            // The dropped anomaly's feedback and its closed incident went with it; the kept one's feedback stayed.
            Assert.Equal(1L, await ScalarAsync<long>(dataSource, "SELECT count(*) FROM anomaly_feedback", ct));
            Assert.Equal(1L, await ScalarAsync<long>(dataSource,
                "SELECT count(*) FROM anomaly_feedback f JOIN anomalies a ON a.id = f.anomaly_id", ct));
            Assert.Equal(0L, await ScalarAsync<long>(dataSource, "SELECT count(*) FROM incidents", ct));
            // scoring_stats has no retention set: only created ahead, never dropped.
            Assert.DoesNotContain(result.Dropped, p => p.Table == "scoring_stats");
            Assert.True(await ScalarAsync<bool>(dataSource, "SELECT to_regclass('scoring_stats_legacy') IS NOT NULL", ct));
            // A second run at the same time has nothing to do.
            var again = await maintenance.RunAsync(ct);
            Assert.Empty(again.Created);
            Assert.Empty(again.Dropped);
        }, CancellationToken.None);
    }

    [Fact]
    public async Task A_batch_replayed_after_the_clock_crossed_a_partition_boundary_inserts_no_second_row()
    {
        await WithDatabaseAsync("fence", async (dataSource, ct) =>
        {
            await new SchemaMigrator(dataSource).MigrateAsync(ct);
            // Two days ahead, so both sides of the boundary are daily partitions the migration made.
            var boundary = Today.AddDays(3);
            var clock = new ManualClock(boundary.AddMilliseconds(-1));
            var store = new AnomalyStore(dataSource, clock);
            var batch = Batch(nextOffset: 100, offsets: [40, 41, 97]);
            await store.WriteAsync(batch, ct);
            clock.Now = boundary.AddMilliseconds(1);
            await store.WriteAsync(batch, ct);
            Assert.Equal(
                [$"{Name("anomalies", 2)}:40", $"{Name("anomalies", 2)}:41", $"{Name("anomalies", 2)}:97"],
                await ColumnAsync<string>(dataSource, "SELECT tableoid::regclass::text || ':' || \"offset\" FROM anomalies ORDER BY \"offset\"", ct));

            // A stale owner's batch that overlaps the committed offsets stores only the events past them; one that is
            // all behind stores nothing and moves no offset back.
            await store.WriteAsync(Batch(nextOffset: 131, offsets: [97, 99, 100, 130]), ct);
            await store.WriteAsync(Batch(nextOffset: 60, offsets: [41, 59]), ct);
            Assert.Equal([40L, 41, 97, 100, 130], await ColumnAsync<long>(dataSource, "SELECT \"offset\" FROM anomalies ORDER BY \"offset\"", ct));
            Assert.Equal(131L, await ScalarAsync<long>(dataSource, "SELECT next_offset FROM consumer_offsets", ct));

            // Two writers of the same batch at once (one waits on the other's offset row lock): one row each event.
            var fresh = Batch(nextOffset: 200, offsets: [150, 199], partition: 1);
            await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => Task.Run(() => new AnomalyStore(dataSource, clock).WriteAsync(fresh, ct), ct)));
            Assert.Equal([150L, 199], await ColumnAsync<long>(dataSource, "SELECT \"offset\" FROM anomalies WHERE \"partition\" = 1 ORDER BY 1", ct));
        }, CancellationToken.None);
    }

    [Fact]
    public async Task The_projects_connections_run_without_jit()
    {
        // Unpruned queries over many partitions would otherwise JIT-compile per partition (docs/performance.md).
        // Also on a pooled connection used again (Npgsql resets its session state with DISCARD ALL on reuse).
        await using var dataSource = PostgresDataSource.Create(infrastructure.PostgresConnectionString);
        for (int use = 0; use < 3; use++)
        {
            await using var connection = await dataSource.OpenConnectionAsync();
            await using var command = new NpgsqlCommand("SHOW jit", connection);
            Assert.Equal("off", (string?)await command.ExecuteScalarAsync());
        }
        await using var plain = NpgsqlDataSource.Create(infrastructure.PostgresConnectionString);
        await using var server = plain.CreateCommand("SELECT current_setting('jit')");
        Assert.Equal("on", (string?)await server.ExecuteScalarAsync()); // the server's default, so the first assertion can fail
    }

    private static string Name(string table, int daysFromToday) => $"{table}_p{Today.AddDays(daysFromToday):yyyyMMdd}";

    private static BatchRecord Batch(long nextOffset, long[] offsets, int partition = 0)
    {
        var record = new BatchRecord("d", "t") { ModelVersion = "v1", Threshold = 5, WindowStart = Today.UtcDateTime, WindowSeconds = 60 };
        foreach (var offset in offsets)
        {
            record.Partitions.Add(partition);
            record.Offsets.Add(offset);
            record.Entities.Add("m1");
            record.EventTimes.Add(null);
            record.Scores.Add(9.5);
            record.PValues.Add(0.001);
            record.Contributions.Add("""[{"feature":"temp","score":9.5}]""");
            record.Events.Add($$"""{"offset":{{offset}}}""");
        }
        record.OffsetPartitions.Add(partition);
        record.NextOffsets.Add(nextOffset);
        record.EventsScored = offsets.Length;
        return record;
    }

    /// <summary>Every row of the tables the migration touches, as text, in a fixed order.</summary>
    private static async Task<Dictionary<string, List<string>>> SnapshotAsync(NpgsqlDataSource dataSource, CancellationToken ct) => new()
    {
        ["anomalies"] = await ColumnAsync<string>(dataSource,
            "SELECT concat_ws('|', id, detector, topic, \"partition\", \"offset\", entity, event_time, detected_at, score, p_value, threshold, model_version, contributions, event, incident_id) FROM anomalies ORDER BY id", ct),
        ["anomaly_feedback"] = await ColumnAsync<string>(dataSource,
            "SELECT concat_ws('|', id, anomaly_id, label, note, created_at, source) FROM anomaly_feedback ORDER BY id", ct),
        ["incidents"] = await ColumnAsync<string>(dataSource, "SELECT i::text FROM incidents i ORDER BY id", ct),
        ["scoring_stats"] = await ColumnAsync<string>(dataSource,
            "SELECT concat_ws('|', detector, window_start, window_seconds, model_version, events_scored, events_flagged, events_dead_lettered, score_p50, score_max, updated_at, score_bins) FROM scoring_stats ORDER BY detector, window_start", ct),
        ["joined"] = await ColumnAsync<string>(dataSource,
            "SELECT f.id || ':' || a.\"offset\" || ':' || coalesce(i.entity, '-') FROM anomaly_feedback f JOIN anomalies a ON a.id = f.anomaly_id LEFT JOIN incidents i ON i.id = a.incident_id ORDER BY f.id", ct),
    };

    private async Task WithDatabaseAsync(string prefix, Func<NpgsqlDataSource, CancellationToken, Task> test, CancellationToken cancellationToken)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        cts.CancelAfter(TimeSpan.FromMinutes(2));
        var database = await infrastructure.CreateDatabaseAsync(prefix, cts.Token);
        try
        {
            await using var dataSource = NpgsqlDataSource.Create(database);
            await test(dataSource, cts.Token);
        }
        finally
        {
            NpgsqlConnection.ClearAllPools();
            await infrastructure.DropDatabaseAsync(database, CancellationToken.None);
        }
    }

    private static async Task ExecuteAsync(NpgsqlDataSource dataSource, string sql, CancellationToken ct)
    {
        await using var command = dataSource.CreateCommand(sql);
        await command.ExecuteNonQueryAsync(ct);
    }

    private static async Task<T> ScalarAsync<T>(NpgsqlDataSource dataSource, string sql, CancellationToken ct)
    {
        await using var command = dataSource.CreateCommand(sql);
        return (T)(await command.ExecuteScalarAsync(ct))!;
    }

    private static async Task<List<T>> ColumnAsync<T>(NpgsqlDataSource dataSource, string sql, CancellationToken ct)
    {
        await using var command = dataSource.CreateCommand(sql);
        await using var reader = await command.ExecuteReaderAsync(ct);
        var values = new List<T>();
        while (await reader.ReadAsync(ct))
            values.Add(reader.GetFieldValue<T>(0));
        return values;
    }

    /// <summary>A clock the test moves.</summary>
    private sealed class ManualClock(DateTimeOffset now) : TimeProvider
    {
        public DateTimeOffset Now { get; set; } = now;

        public override DateTimeOffset GetUtcNow() => Now;
    }
}
