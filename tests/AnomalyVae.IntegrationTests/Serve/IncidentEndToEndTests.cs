using System.Globalization;
using System.Text;
using AnomalyVae.IntegrationTests.Infrastructure;
using AnomalyVae.Storage;
using Npgsql;

namespace AnomalyVae.IntegrationTests.Serve;

/// <summary>
/// A stuck sensor through the real service: one entity reports the same impossible reading for 100 s of event time;
/// serve turns its flags into one incident, and closes it once the other events' times pass the gap. Event times
/// drive the clock, so nothing here waits on the wall clock.
/// </summary>
[Collection(InfrastructureCollection.Name)]
public sealed class IncidentEndToEndTests(TestInfrastructure infrastructure, ServeFixture fixture) : IClassFixture<ServeFixture>
{
    [Fact]
    public async Task A_stuck_entity_becomes_one_incident_closed_after_the_gap()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        await using var stream = await ServeStream.CreateAsync(infrastructure, "incident-e2e", partitions: 2, cts.Token);
        var (topic, deadLetters, database) = stream;
        // 1200 s of events, one per second; "stuck-7" reports a=0, b=8, c=5000 (b is normally 2a, c near e)
        // every second from 300 s to 399 s, on top of the fleet's normal events.
        var start = new DateTime(2026, 2, 1, 0, 0, 0, DateTimeKind.Utc);
        var events = new List<byte[]?>();
        var random = new Random(3);
        for (int s = 0; s < 1200; s++)
        {
            var ts = start.AddSeconds(s).ToString("yyyy-MM-ddTHH:mm:ss.fffZ", CultureInfo.InvariantCulture);
            double a = random.NextDouble() - 0.5;
            events.Add(Encoding.UTF8.GetBytes(string.Create(CultureInfo.InvariantCulture,
                $"{{\"id\":\"m{s % 20}\",\"ts\":\"{ts}\",\"a\":{a:R},\"b\":{2 * a:R},\"c\":{Math.Exp(1 + 0.5 * a):R},\"color\":\"{(a < 0 ? "green" : "blue")}\",\"flag\":{(a > 0 ? "true" : "false")}}}")));
            if (s is >= 300 and < 400)
                events.Add(Encoding.UTF8.GetBytes($"{{\"id\":\"stuck-7\",\"ts\":\"{ts}\",\"a\":0,\"b\":8,\"c\":5000,\"color\":\"red\",\"flag\":false}}"));
        }
        var produced = await ServeFixture.ProduceAsync(infrastructure, topic, events, cts.Token);
        var configuration = fixture.Configuration(infrastructure, topic, deadLetters, database, $"g-{Guid.NewGuid():N}");
        configuration["Detectors:0:IncidentGap"] = "00:02:00";
        await ServeFixture.ServeUntilStoredAsync(configuration, database, topic, produced, cts.Token);

        var scores = fixture.DirectScores(produced, out double threshold, out _);
        var stuck = produced.Where(e => ServeFixture.Entity(e.Payload!) == "stuck-7").ToList();
        Assert.All(stuck, e => Assert.True(scores[(e.Partition, e.Offset)] > threshold, "the stuck reading must be flagged"));

        await using var dataSource = NpgsqlDataSource.Create(database);
        var page = await new IncidentQueries(dataSource).ListAsync(new IncidentFilter(Detector: "sensors", Entity: "stuck-7"), cts.Token);
        var incident = Assert.Single(page.Items);
        Assert.Equal(IncidentFilter.Closed, incident.Status);
        Assert.Equal(100, incident.AnomalyCount);
        Assert.Equal(start.AddSeconds(300), incident.FirstAt.UtcDateTime);
        Assert.Equal(start.AddSeconds(399), incident.LastAt.UtcDateTime);
        Assert.Equal(start.AddSeconds(399 + 120), incident.ClosedAt!.Value.UtcDateTime);
        Assert.Contains(incident.TopFeatures, f => f.Feature is "c" or "b");
        var anomalies = await new AnomalyQueries(dataSource).ListAsync(new AnomalyFilter(Incident: incident.Id, Limit: 1000), cts.Token);
        Assert.Equal(100, anomalies.Items.Count);
        Assert.All(anomalies.Items, a => Assert.Equal("stuck-7", a.Entity));
        Assert.Equal(anomalies.Items.Max(a => a.Score), incident.PeakScore);
    }
}
