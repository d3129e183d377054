using AnomalyVae.IntegrationTests.Infrastructure;
using AnomalyVae.Storage;
using Npgsql;

namespace AnomalyVae.IntegrationTests.Serve;

/// <summary>The batch transaction against real PostgreSQL: applying a batch twice, or a stale one, changes nothing.</summary>
[Collection(InfrastructureCollection.Name)]
public sealed class AnomalyStoreTests(TestInfrastructure infrastructure)
{
    [Fact]
    public async Task A_batch_applied_twice_or_a_stale_batch_neither_duplicates_rows_nor_moves_offsets_back_nor_counts_twice()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(1));
        var database = await infrastructure.CreateDatabaseAsync("store", cts.Token);
        try
        {
            await using var dataSource = NpgsqlDataSource.Create(database);
            await new SchemaMigrator(dataSource).MigrateAsync(cts.Token);
            var store = new AnomalyStore(dataSource);
            var window = new DateTime(2026, 1, 1, 0, 0, 0, DateTimeKind.Utc);

            var batch = Record(window, next: 100, flaggedOffset: 42);
            await store.WriteAsync(batch, cts.Token);
            await store.WriteAsync(batch, cts.Token);
            await store.WriteAsync(Record(window, next: 60, flaggedOffset: 42), cts.Token);

            Assert.Equal(1L, await ScalarAsync(dataSource, "SELECT count(*) FROM anomalies", cts.Token));
            Assert.Equal(100L, await ScalarAsync(dataSource, "SELECT next_offset FROM consumer_offsets", cts.Token));
            Assert.Equal(10L, await ScalarAsync(dataSource, "SELECT events_scored FROM scoring_stats", cts.Token));
            Assert.Equal(2L, await ScalarAsync(dataSource, "SELECT events_dead_lettered FROM scoring_stats", cts.Token));

            await store.WriteAsync(Record(window, next: 150, flaggedOffset: 120), cts.Token);
            Assert.Equal(2L, await ScalarAsync(dataSource, "SELECT count(*) FROM anomalies", cts.Token));
            Assert.Equal(150L, await ScalarAsync(dataSource, "SELECT next_offset FROM consumer_offsets", cts.Token));
            Assert.Equal(20L, await ScalarAsync(dataSource, "SELECT events_scored FROM scoring_stats", cts.Token));
            Assert.True(await store.PingAsync(cts.Token));
        }
        finally
        {
            NpgsqlConnection.ClearAllPools();
            await infrastructure.DropDatabaseAsync(database, CancellationToken.None);
        }
    }

    [Fact]
    public async Task Samples_fill_the_reservoir_then_replace_slots_wrap_the_ring_and_a_replayed_batch_admits_nothing()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(1));
        var database = await infrastructure.CreateDatabaseAsync("sample", cts.Token);
        try
        {
            await using var dataSource = NpgsqlDataSource.Create(database);
            await new SchemaMigrator(dataSource).MigrateAsync(cts.Token);
            var store = new AnomalyStore(dataSource);
            var window = new DateTime(2026, 1, 1, 0, 0, 0, DateTimeKind.Utc);

            // Reservoir of 8, ring of 5; each batch admits 6 events to each.
            var first = SampleRecord(window, next: 10, firstOffset: 0);
            await store.WriteAsync(first, cts.Token);
            await store.WriteAsync(first, cts.Token);
            Assert.Equal(6L, await ScalarAsync(dataSource, "SELECT count(*) FROM training_sample", cts.Token));
            Assert.Equal(5L, await ScalarAsync(dataSource, "SELECT count(*) FROM recent_events", cts.Token));
            Assert.Equal(6L, await ScalarAsync(dataSource, "SELECT training_admitted FROM sample_counters", cts.Token));
            Assert.Equal(6L, await ScalarAsync(dataSource, "SELECT recent_admitted FROM sample_counters", cts.Token));
            // The ring's slot 0 went to the 6th admission (offset 5), overwriting the 1st.
            Assert.Equal(5L, await ScalarAsync(dataSource, "SELECT \"offset\" FROM recent_events WHERE slot = 0", cts.Token));
            Assert.Equal(1L, await ScalarAsync(dataSource, "SELECT count(*) FROM recent_events WHERE flagged", cts.Token));
            Assert.Equal(1L, await ScalarAsync(dataSource, "SELECT count(*) FROM training_sample WHERE event ->> 'i' = '3' AND slot = 3", cts.Token));

            await store.WriteAsync(SampleRecord(window, next: 20, firstOffset: 10), cts.Token);
            Assert.Equal(8L, await ScalarAsync(dataSource, "SELECT count(*) FROM training_sample", cts.Token));
            Assert.Equal(12L, await ScalarAsync(dataSource, "SELECT training_admitted FROM sample_counters", cts.Token));
            // Admissions 6 and 7 filled slots 6 and 7; 8..11 replaced the slots their draws picked: ⌊(2/6 .. 5/6)·8⌋ = 2, 4, 5, 6.
            Assert.Equal(
                "0:0,1:1,2:12,3:3,4:13,5:14,6:15,7:11",
                await TextAsync(dataSource, "SELECT string_agg(slot || ':' || \"offset\", ',' ORDER BY slot) FROM training_sample", cts.Token));
            Assert.Equal(
                "0:14,1:15,2:11,3:12,4:13",
                await TextAsync(dataSource, "SELECT string_agg(slot || ':' || \"offset\", ',' ORDER BY slot) FROM recent_events", cts.Token));
            // A stale batch (its offsets behind the stored ones) admits nothing; a sample of size 0 writes nothing.
            await store.WriteAsync(SampleRecord(window, next: 15, firstOffset: 100), cts.Token);
            var off = SampleRecord(window, next: 30, firstOffset: 20);
            off.TrainingSampleSize = 0;
            off.RecentSize = 0;
            await store.WriteAsync(off, cts.Token);
            Assert.Equal("12/12", await TextAsync(dataSource, "SELECT training_admitted || '/' || recent_admitted FROM sample_counters", cts.Token));
            Assert.Equal(0L, await ScalarAsync(dataSource, "SELECT count(*) FROM training_sample WHERE \"offset\" >= 20", cts.Token));
            Assert.Equal(0L, await ScalarAsync(dataSource, "SELECT count(*) FROM recent_events WHERE \"offset\" >= 20", cts.Token));
            // Score bins add up element-wise over the window's batches (the replay and the stale batch counted once).
            Assert.Equal("{3,0,0,0,0,0,0,0,0,0,15}", await TextAsync(dataSource, "SELECT score_bins::text FROM scoring_stats", cts.Token));
        }
        finally
        {
            NpgsqlConnection.ClearAllPools();
            await infrastructure.DropDatabaseAsync(database, CancellationToken.None);
        }
    }

    private static BatchRecord SampleRecord(DateTime window, long next, long firstOffset)
    {
        var record = new BatchRecord("d", "t")
        {
            ModelVersion = "v1",
            Threshold = 5,
            WindowStart = window,
            WindowSeconds = 60,
            TrainingSampleSize = 8,
            RecentSize = 5,
        };
        for (int i = 0; i < 6; i++)
        {
            long offset = firstOffset + i;
            byte[] payload = System.Text.Encoding.UTF8.GetBytes($"{{\"i\":{offset}}}");
            record.Training.Add(0, offset, null, 1.5, false, payload, i / 6.0);
            record.Recent.Add(0, offset, window, i == 1 ? 9 : 1, i == 1, payload, 0);
        }
        record.OffsetPartitions.Add(0);
        record.NextOffsets.Add(next);
        record.EventsScored = 6;
        record.ScoreBins[0] = 1;
        record.ScoreBins[10] = 5;
        record.Quantiles = (1, 2, 3, 9);
        return record;
    }

    private static async Task<string?> TextAsync(NpgsqlDataSource dataSource, string sql, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand(sql);
        return (string?)await command.ExecuteScalarAsync(cancellationToken);
    }

    private static BatchRecord Record(DateTime window, long next, long flaggedOffset)
    {
        var record = new BatchRecord("d", "t") { ModelVersion = "v1", Threshold = 5, WindowStart = window, WindowSeconds = 60 };
        record.Partitions.Add(0);
        record.Offsets.Add(flaggedOffset);
        record.Entities.Add("m1");
        record.EventTimes.Add(null);
        record.Scores.Add(9.5);
        record.PValues.Add(0.001);
        record.Contributions.Add("[{\"feature\":\"a\",\"score\":9.5}]");
        record.Events.Add("{\"a\":1}");
        record.OffsetPartitions.Add(0);
        record.NextOffsets.Add(next);
        record.EventsScored = 10;
        record.EventsDeadLettered = 2;
        record.Quantiles = (1, 2, 3, 9.5);
        return record;
    }

    private static async Task<long> ScalarAsync(NpgsqlDataSource dataSource, string sql, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand(sql);
        return Convert.ToInt64(await command.ExecuteScalarAsync(cancellationToken), System.Globalization.CultureInfo.InvariantCulture);
    }
}
