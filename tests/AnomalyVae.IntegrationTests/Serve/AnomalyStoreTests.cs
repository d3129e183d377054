using AnomalyVae.IntegrationTests.Infrastructure;
using AnomalyVae.Service.Storage;
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
