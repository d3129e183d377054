using AnomalyVae.IntegrationTests.Infrastructure;
using AnomalyVae.Retraining;
using AnomalyVae.Storage;
using AnomalyVae.Streaming;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;

namespace AnomalyVae.IntegrationTests.Serve;

/// <summary>
/// Window state against real PostgreSQL, without Kafka: the offsets guard the state (a replayed or stale batch does
/// not overwrite it), and a detector whose memory holds fewer entities than it sees (evicting and reading back in one
/// query per batch), restarted half-way, scores exactly like one that keeps everything in memory.
/// </summary>
[Collection(InfrastructureCollection.Name)]
public sealed class WindowStateStoreTests(TestInfrastructure infrastructure, ServeFixture fixture) : IClassFixture<ServeFixture>
{
    [Fact]
    public async Task A_replayed_or_stale_batch_does_not_overwrite_the_state_a_newer_one_does()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(1));
        await using var database = await TestDatabase.CreateAsync(infrastructure, "window_state", migrated: true, cts.Token);
        var store = new AnomalyStore(database.DataSource);

        await store.WriteAsync(Record(next: 100, state: 1), cts.Token);
        Assert.Equal((99L, (byte)1), await StoredAsync(database.DataSource, cts.Token));
        // The same batch again (its COMMIT acknowledgement lost) with other bytes, and an older batch: ignored.
        await store.WriteAsync(Record(next: 100, state: 2), cts.Token);
        await store.WriteAsync(Record(next: 60, state: 3), cts.Token);
        Assert.Equal((99L, (byte)1), await StoredAsync(database.DataSource, cts.Token));
        await store.WriteAsync(Record(next: 150, state: 4), cts.Token);
        Assert.Equal((149L, (byte)4), await StoredAsync(database.DataSource, cts.Token));
    }

    [Fact]
    public async Task Evicting_reading_back_and_restarting_score_like_keeping_everything_in_memory()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        await using var database = await TestDatabase.CreateAsync(infrastructure, "window_evict", migrated: true, cts.Token);
        var store = new AnomalyStore(database.DataSource);
        var states = new WindowStateStore(database.DataSource);
        var options = new ServiceOptions();
        options.Detectors.Add(new DetectorOptions { Name = "w", Topic = "t", Model = fixture.WindowedModelPath, EntityField = "id", Threshold = -1e30 });
        using var detector = Assert.Single(Detector.LoadAll(options, NullLogger.Instance));
        // 20 entities in one partition, batches of 16: each batch sees a few of them, most are evicted between.
        var payloads = ServeFixture.Events(1200, seed: 71).Where(p => p is not null && p.AsSpan().IndexOf("\"id\""u8) >= 0).Cast<byte[]>().ToList();

        var reference = Stream(detector, payloads, new EntityWindows("w", "t", 1000, null, null, NullLogger.Instance), null, 0, payloads.Count);
        var capped = new EntityWindows("w", "t", maxEntities: 6, states, null, NullLogger.Instance);
        capped.Assigned([0]);
        var first = Stream(detector, payloads, capped, store, 0, payloads.Count / 2);
        // A restart: a fresh process reads the partition's state at assignment and goes on.
        var restarted = new EntityWindows("w", "t", maxEntities: 6, states, null, NullLogger.Instance);
        restarted.Assigned([0]);
        var second = Stream(detector, payloads, restarted, store, payloads.Count / 2, payloads.Count);

        var scores = first.Concat(second).ToList();
        Assert.Equal(reference.Count, scores.Count);
        for (int i = 0; i < scores.Count; i++)
            Assert.True(Math.Abs(reference[i] - scores[i]) <= 1e-5 * Math.Max(1, Math.Abs(reference[i])), $"event {i}: {reference[i]} in memory, {scores[i]} capped");
        Assert.True(capped.Evicted > 100, $"only {capped.Evicted} evictions");
        // One read per batch at most: the assignment read plus the batches that missed.
        Assert.InRange(capped.Loads, 10, 1 + ((payloads.Count / 2) + 15) / 16);
        Console.WriteLine($"capped: {capped.Evicted} evictions, {capped.Loads} reads over {(payloads.Count / 2 + 15) / 16} batches");
    }

    /// <summary>Scores events [from, to) in batches of 16 on partition 0 (offset = index), committing each batch when a store is given.</summary>
    private static List<double> Stream(Detector detector, List<byte[]> payloads, EntityWindows windows, AnomalyStore? store, int from, int to)
    {
        var scorer = new BatchScorer("w", "t", new ScoringOptions { BatchSize = 16 }, new RetrainingOptions { SampleSize = 0, RecentSize = 0 }, windows);
        using var batch = new MicroBatch("w", "t", 16);
        batch.Bind(detector.AcquireCurrent()!);
        var scores = new List<double>();
        var now = DateTime.UtcNow;
        for (int start = from; start < to; start += 16)
        {
            batch.Clear();
            for (int i = start; i < Math.Min(to, start + 16); i++)
                batch.Add(0, i, payloads[i], now, now);
            scorer.Build(batch);
            Assert.Empty(batch.DeadLetters);
            scores.AddRange(batch.Record.Scores);
            store?.WriteAsync(batch.Record, CancellationToken.None).GetAwaiter().GetResult();
            windows.Committed(batch.WindowSequence);
        }
        return scores;
    }

    private static BatchRecord Record(long next, byte state)
    {
        var record = new BatchRecord("w", "t") { ModelVersion = "v1", Threshold = 1, WindowSeconds = 60, WindowStart = new DateTime(2026, 1, 1, 0, 0, 0, DateTimeKind.Utc) };
        record.OffsetPartitions.Add(0);
        record.NextOffsets.Add(next);
        record.WindowState.Spec = "spec";
        record.WindowState.Add(0, "m1", next - 1, 3).Fill(state);
        return record;
    }

    private static async Task<(long LastOffset, byte First)> StoredAsync(NpgsqlDataSource dataSource, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand("SELECT last_offset, state FROM window_state WHERE detector = 'w' AND entity = 'm1'");
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        Assert.True(await reader.ReadAsync(cancellationToken));
        var (offset, bytes) = (reader.GetInt64(0), reader.GetFieldValue<byte[]>(1));
        Assert.Equal(3, bytes.Length);
        Assert.False(await reader.ReadAsync(cancellationToken));
        return (offset, bytes[0]);
    }
}
