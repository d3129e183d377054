using AnomalyVae.IntegrationTests.Infrastructure;
using AnomalyVae.Storage;
using AnomalyVae.Streaming;
using Npgsql;

namespace AnomalyVae.IntegrationTests.Serve;

/// <summary>
/// The transitions the batch transaction hands to alerting before COMMIT, against real PostgreSQL: opened and closed
/// (by a later anomaly and by the clock), nothing for a replay of a committed batch, and the same dedup keys when a batch
/// whose COMMIT never happened (a crash after the alert records went out) is written again.
/// </summary>
[Collection(InfrastructureCollection.Name)]
public sealed class IncidentTransitionTests(TestInfrastructure infrastructure)
{
    private static readonly DateTime T0 = IncidentBatch.T0;

    [Fact]
    public async Task Transitions_are_read_before_commit_and_a_batch_replayed_after_a_crash_gives_the_same_dedup_keys()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(1));
        await using var database = await TestDatabase.CreateAsync(infrastructure, "transitions", migrated: true, cts.Token);
        var store = new AnomalyStore(database.DataSource);

        // m1 flagged at 0 and 1 min (partition 0, offsets 3 and 4), m2 at 1 min (partition 1, offset 7).
        var first = Record(10, (0, 3, "m1", 0, 12), (0, 4, "m1", 1, 30), (1, 7, "m2", 1, 8));
        // The alert records are out, then the process dies before COMMIT: nothing is stored.
        var crashed = new List<IncidentTransition>();
        await Assert.ThrowsAsync<IOException>(() => store.WriteAsync(first, (t, _) =>
        {
            crashed.AddRange(t);
            throw new IOException("crash before COMMIT");
        }, cts.Token));
        Assert.Equal(0L, await database.ScalarAsync<long>("SELECT count(*) FROM anomalies", cts.Token));
        Assert.Equal(0L, await database.ScalarAsync<long>("SELECT count(*) FROM incidents", cts.Token));

        // The replay stores the same events under new row ids; its transitions carry the same keys.
        var replayed = await WriteAsync(store, first, cts.Token);
        Assert.Equal(["d:t:0:3:incident_opened", "d:t:1:7:incident_opened"], Keys(crashed));
        Assert.Equal(Keys(crashed), Keys(replayed));
        var m1 = replayed.Single(t => t.Entity == "m1");
        Assert.Equal((2L, 30.0, (DateTime?)null), (m1.AnomalyCount, m1.PeakScore, m1.ClosedAt));
        Assert.Equal("t/0/3", m1.IncidentKey);
        Assert.Equal(["a", "b"], m1.TopFeatures.Select(f => f.Key));
        Assert.True(await database.ScalarAsync<long>("SELECT min(id) FROM anomalies", cts.Token) > 3, "row ids differ from the rolled-back attempt's");

        // The same batch once more (its COMMIT acknowledgement lost): nothing new happened.
        Assert.Empty(await WriteAsync(store, first, cts.Token));

        // m1 again at 20 min (after the 5 min gap): the first m1 incident closes (by the rules) and a second opens;
        // the clock of both partitions passes 6 min, so m2 closes too (by the sweep).
        var second = Record(20, (1, 11, "m1", 20, 9));
        second.AdvanceClock(0, T0.AddMinutes(20));
        var next = await WriteAsync(store, second, cts.Token);
        Assert.Equal(["d:t:0:3:incident_closed", "d:t:1:11:incident_opened", "d:t:1:7:incident_closed"], Keys(next));
        var closedM1 = next.Single(t => t.IncidentKey == "t/0/3");
        Assert.Equal(T0.AddMinutes(1 + 5), closedM1.ClosedAt);
        Assert.Equal(2, closedM1.AnomalyCount);
        Assert.Equal(T0.AddMinutes(1 + 5), next.Single(t => t.IncidentKey == "t/1/7").ClosedAt);

        // What the Alertmanager re-send reads: the open incident, and the ones closed since a minute ago.
        var current = await IncidentTransitions.CurrentAsync(database.DataSource, ["d"], DateTime.UtcNow.AddMinutes(-1), cts.Token);
        Assert.Equal(["d:t:0:3:incident_closed", "d:t:1:11:incident_opened", "d:t:1:7:incident_closed"], Keys(current));
        Assert.Equal(["d:t:1:11:incident_opened"], Keys(await IncidentTransitions.CurrentAsync(database.DataSource, ["d"], DateTime.UtcNow.AddMinutes(1), cts.Token)));
        Assert.Empty(await IncidentTransitions.CurrentAsync(database.DataSource, ["other"], DateTime.UtcNow.AddMinutes(-1), cts.Token));
    }

    private static async Task<List<IncidentTransition>> WriteAsync(AnomalyStore store, BatchRecord record, CancellationToken cancellationToken)
    {
        var seen = new List<IncidentTransition>();
        await store.WriteAsync(record, (t, _) =>
        {
            seen.AddRange(t);
            return Task.CompletedTask;
        }, cancellationToken);
        return seen;
    }

    private static List<string> Keys(IEnumerable<IncidentTransition> transitions) =>
        [.. transitions.Select(t => AlertRecord.DedupKey(t.Detector, t.FirstTopic, t.FirstPartition, t.FirstOffset, AlertRecord.Kind(t.Kind))).Order(StringComparer.Ordinal)];

    private static BatchRecord Record(long next, params (int Partition, long Offset, string Entity, double Minutes, double Score)[] flagged) =>
        IncidentBatch.Of(next, TimeSpan.FromMinutes(5), flagged);
}
