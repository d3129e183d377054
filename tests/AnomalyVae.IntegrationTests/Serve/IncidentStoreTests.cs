using AnomalyVae.IntegrationTests.Infrastructure;
using AnomalyVae.Storage;
using Npgsql;

namespace AnomalyVae.IntegrationTests.Serve;

/// <summary>
/// Incidents in the batch transaction against real PostgreSQL, with event times the test sets (the clock it controls):
/// grouping, a replayed batch counting nothing twice, the slowest partition holding the clock, closing after the gap,
/// the next anomaly opening a new incident, the queries and labelling a whole incident.
/// </summary>
[Collection(InfrastructureCollection.Name)]
public sealed class IncidentStoreTests(TestInfrastructure infrastructure)
{
    private static readonly DateTime T0 = IncidentBatch.T0;
    private static readonly TimeSpan Gap = TimeSpan.FromMinutes(5);

    [Fact]
    public async Task Anomalies_group_into_incidents_exactly_once_and_close_when_every_partitions_clock_passed_the_gap()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(1));
        await using var database = await TestDatabase.CreateAsync(infrastructure, "incidents", migrated: true, cts.Token);
        var store = new AnomalyStore(database.DataSource);

        // Partition 0: m1 flagged at 0 and 1 min, m2 at 1 min; partition 1: nothing flagged, clock at 1 min.
        var first = Record(next: 10, (0, 1, "m1", 0, 12), (0, 2, "m1", 1, 30), (0, 3, "m2", 1, 8));
        first.AdvanceClock(1, T0.AddMinutes(1));
        await store.WriteAsync(first, cts.Token);
        await store.WriteAsync(first, cts.Token);
        Assert.Equal("m1:2:30:open,m2:1:8:open", await IncidentsAsync(database.DataSource, cts.Token));
        Assert.Equal(0L, await database.ScalarAsync<long>("SELECT count(*) FROM anomalies WHERE incident_id IS NULL", cts.Token));

        // Partition 0 runs ahead to 30 min, partition 1 is still at 1 min: nothing closes yet.
        await store.WriteAsync(Record(next: 20, clock: (0, 30)), cts.Token);
        Assert.Equal("m1:2:30:open,m2:1:8:open", await IncidentsAsync(database.DataSource, cts.Token));

        // m1 flagged again at 4 min (in partition 1, within the gap), partition 1's clock at 10 min: m2 (last 1 min)
        // closes at 6 min; m1 (last 4 min) closes at 9 min.
        var third = Record(next: 25, (1, 5, "m1", 4, 50));
        third.AdvanceClock(1, T0.AddMinutes(10));
        await store.WriteAsync(third, cts.Token);
        Assert.Equal("m1:3:50:closed@9,m2:1:8:closed@6", await IncidentsAsync(database.DataSource, cts.Token));

        // m1 again at 31 min: a new incident (offset 26: partition 0 committed up to 25, and a row below the
        // committed offset is a replay that the insert's fence skips).
        var fourth = Record(next: 30, (0, 26, "m1", 31, 7));
        fourth.AdvanceClock(1, T0.AddMinutes(31));
        await store.WriteAsync(fourth, cts.Token);
        Assert.Equal("m1:3:50:closed@9,m1:1:7:open,m2:1:8:closed@6", await IncidentsAsync(database.DataSource, cts.Token));

        // Each anomaly points at its incident; the incident's totals are those of its anomalies.
        Assert.Equal(0L, await database.ScalarAsync<long>(
            """
            SELECT count(*) FROM incidents i
            WHERE anomaly_count <> (SELECT count(*) FROM anomalies a WHERE a.incident_id = i.id)
               OR peak_score <> (SELECT max(score) FROM anomalies a WHERE a.incident_id = i.id)
               OR EXISTS (SELECT 1 FROM anomalies a WHERE a.incident_id = i.id AND a.entity <> i.entity)
            """, cts.Token));

        var queries = new IncidentQueries(database.DataSource);
        var open = await queries.ListAsync(new IncidentFilter(Status: IncidentFilter.Open), cts.Token);
        var m1 = Assert.Single(open.Items);
        Assert.Equal(("m1", 1L), (m1.Entity, m1.AnomalyCount));
        var page = await queries.ListAsync(new IncidentFilter(Detector: "d", Entity: "m1", Limit: 1), cts.Token);
        Assert.Equal(m1.Id, Assert.Single(page.Items).Id);
        var rest = await queries.ListAsync(new IncidentFilter(Detector: "d", Entity: "m1", Limit: 1, After: page.Next), cts.Token);
        var closed = Assert.Single(rest.Items);
        Assert.Null(rest.Next);
        Assert.Equal((IncidentFilter.Closed, 3L, T0.AddMinutes(9)), (closed.Status, closed.AnomalyCount, closed.ClosedAt!.Value.UtcDateTime));
        Assert.Equal("a", closed.TopFeatures[0].Feature);
        Assert.Empty((await queries.ListAsync(new IncidentFilter(From: T0.AddMinutes(20), To: T0.AddMinutes(30)), cts.Token)).Items);

        var anomalies = await new AnomalyQueries(database.DataSource).ListAsync(new AnomalyFilter(Incident: closed.Id), cts.Token);
        Assert.Equal(3, anomalies.Items.Count);
        Assert.All(anomalies.Items, a => Assert.Equal("m1", a.Entity));

        var feedback = new FeedbackStore(database.DataSource);
        Assert.Equal(3L, await feedback.AddToIncidentAsync(closed.Id, FeedbackStore.FalsePositive, "stuck sensor", "cli", cts.Token));
        Assert.Null(await feedback.AddToIncidentAsync(closed.Id + 1000, FeedbackStore.FalsePositive, null, "cli", cts.Token));
        Assert.Equal(3L, await database.ScalarAsync<long>("SELECT count(*) FROM anomaly_feedback WHERE label = 'false_positive'", cts.Token));
    }

    [Fact]
    public async Task With_incidents_off_no_incident_is_written()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(1));
        await using var database = await TestDatabase.CreateAsync(infrastructure, "noincidents", migrated: true, cts.Token);
        var record = Record(next: 10, (0, 1, "m1", 0, 12));
        record.IncidentGap = TimeSpan.Zero;
        await new AnomalyStore(database.DataSource).WriteAsync(record, cts.Token);
        Assert.Equal(1L, await database.ScalarAsync<long>("SELECT count(*) FROM anomalies WHERE incident_id IS NULL", cts.Token));
        Assert.Equal(0L, await database.ScalarAsync<long>("SELECT count(*) FROM incidents", cts.Token));
    }

    private static BatchRecord Record(long next, params (int Partition, long Offset, string Entity, double Minutes, double Score)[] flagged) =>
        IncidentBatch.Of(next, Gap, flagged);

    /// <summary>A batch that also moves one partition's clock to <paramref name="clock"/> (minutes after T0).</summary>
    private static BatchRecord Record(long next, (int Partition, double Minutes) clock,
        params (int Partition, long Offset, string Entity, double Minutes, double Score)[] flagged)
    {
        var record = IncidentBatch.Of(next, Gap, flagged);
        record.AdvanceClock(clock.Partition, T0.AddMinutes(clock.Minutes));
        return record;
    }

    private static async Task<string> IncidentsAsync(NpgsqlDataSource dataSource, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand(
            """
            SELECT string_agg(entity || ':' || anomaly_count || ':' || peak_score || ':' ||
                              COALESCE('closed@' || (extract(epoch FROM closed_at - $1) / 60)::integer, 'open'), ',' ORDER BY entity, id)
            FROM incidents
            """);
        command.Parameters.Add(new NpgsqlParameter<DateTime> { TypedValue = T0 });
        return (string)(await command.ExecuteScalarAsync(cancellationToken))!;
    }
}
