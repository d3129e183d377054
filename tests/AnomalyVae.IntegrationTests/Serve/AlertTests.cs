using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using AnomalyVae.IntegrationTests.Infrastructure;
using AnomalyVae.Streaming;
using AnomalyVae.UnitTests.Model;
using Confluent.Kafka;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using Xunit.Abstractions;

namespace AnomalyVae.IntegrationTests.Serve;

/// <summary>
/// Alerts through the real service, a real Alertmanager (Debian's 0.25) and a real alerts topic: a stuck sensor opens
/// one alert and one incident_opened record, and both resolve when the incident closes; with Alertmanager away, scoring
/// goes on and what could not be delivered is counted. Event times drive the incident clock; every wait is on a condition.
/// </summary>
[Collection(InfrastructureCollection.Name)]
public sealed class AlertTests(TestInfrastructure infrastructure, ServeFixture fixture, ITestOutputHelper output) : IClassFixture<ServeFixture>
{
    private static readonly DateTime Start = new(2026, 2, 1, 0, 0, 0, DateTimeKind.Utc);
    private static readonly SchemaValidator Schema = SchemaValidator.ForFile("alert.schema.json");

    [Fact]
    public async Task A_stuck_sensor_opens_one_alert_in_Alertmanager_and_on_the_alerts_topic_and_both_resolve_when_its_incident_closes()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(4));
        await using var stream = await ServeStream.CreateAsync(infrastructure, "alerts-e2e", partitions: 2, cts.Token);
        var (topic, deadLetters, database) = stream;
        var alertsTopic = await infrastructure.CreateTopicAsync("alerts-e2e-alerts", partitions: 1, cts.Token);
        await using var alertmanager = await AlertmanagerProcess.StartAsync(cts.Token);
        var configuration = fixture.Configuration(infrastructure, topic, deadLetters, database, $"g-{Guid.NewGuid():N}");
        configuration["Detectors:0:IncidentGap"] = "00:02:00";
        configuration["Detectors:0:Alerts:Topic"] = alertsTopic;
        configuration["Alertmanager:Url"] = alertmanager.Url;
        configuration["Alertmanager:ResendInterval"] = "00:00:01";
        configuration["Alertmanager:DashboardUrl"] = "http://dashboard.test:8081";
        await using var app = ServeFixture.Host(configuration);
        await app.StartAsync(cts.Token);
        var exposition = app.Services.GetRequiredService<PrometheusExposition>();

        // Phase 1: 420 s of event time; stuck-7 is stuck from 300 s to 399 s. The clock stops at 419 s, before the
        // incident's close at 399 + 120 s: it is open.
        var phase1 = await ServeFixture.ProduceAsync(infrastructure, topic, StuckSensorEvents(0, 420), cts.Token);
        var firstStuck = phase1.First(e => ServeFixture.Entity(e.Payload!) == "stuck-7");
        var waited = Stopwatch.StartNew();
        List<JsonElement> alerts;
        while ((alerts = await alertmanager.AlertsAsync(cts.Token, "entity=\"stuck-7\"")).Count == 0)
        {
            Assert.True(waited.Elapsed < TimeSpan.FromMinutes(2), "no alert for stuck-7 after 2 minutes\n" + alertmanager.Log);
            await Task.Delay(100, cts.Token);
        }
        output.WriteLine($"alert visible in Alertmanager {waited.Elapsed.TotalSeconds:F2} s after the first events were produced");
        // Re-sent every second: wait for a few rounds, then it is still one alert.
        double sentBefore = Metric(exposition.Scrape(), "anomalyvae_alertmanager_sent_total");
        while (Metric(exposition.Scrape(), "anomalyvae_alertmanager_sent_total") < sentBefore + 3)
        {
            Assert.True(waited.Elapsed < TimeSpan.FromMinutes(3), "no re-sends");
            await Task.Delay(100, cts.Token);
        }
        alerts = await alertmanager.AlertsAsync(cts.Token, "entity=\"stuck-7\"");
        var alert = Assert.Single(alerts);
        var labels = alert.GetProperty("labels");
        Assert.Equal(AlertmanagerSender.AlertName, labels.GetProperty("alertname").GetString());
        Assert.Equal("sensors", labels.GetProperty("detector").GetString());
        Assert.Equal($"{topic}/{firstStuck.Partition}/{firstStuck.Offset}", labels.GetProperty("incident").GetString());
        Assert.Contains(labels.GetProperty("severity").GetString(), new[] { "critical", "warning", "info" });
        Assert.Equal("active", alert.GetProperty("status").GetProperty("state").GetString());
        var annotations = alert.GetProperty("annotations");
        Assert.Matches("^(c|b) \\(", annotations.GetProperty("top_features").GetString());
        Assert.Equal("http://dashboard.test:8081/?detector=sensors&entity=stuck-7", annotations.GetProperty("dashboard").GetString());
        Assert.Equal(Start.AddSeconds(300), alert.GetProperty("startsAt").GetDateTime().ToUniversalTime());

        // Phase 2: the rest of the hour passes the gap: the incident closes, and with it the alert (resolve_timeout
        // is 10 minutes, so its end comes from serve's endsAt).
        await ServeFixture.ProduceAsync(infrastructure, topic, StuckSensorEvents(420, 1200), cts.Token);
        var closing = Stopwatch.StartNew();
        while ((await alertmanager.AlertsAsync(cts.Token, "entity=\"stuck-7\"")).Count > 0)
        {
            Assert.True(closing.Elapsed < TimeSpan.FromMinutes(2), "the stuck-7 alert did not resolve\n" + alertmanager.Log);
            await Task.Delay(100, cts.Token);
        }
        output.WriteLine($"alert resolved {closing.Elapsed.TotalSeconds:F2} s after the closing events were produced");
        var scrape = exposition.Scrape();
        double count = Metric(scrape, "anomalyvae_alertmanager_delivery_seconds_count"), sum = Metric(scrape, "anomalyvae_alertmanager_delivery_seconds_sum");
        output.WriteLine($"commit -> Alertmanager accepted: {count} transitions, mean {1000 * sum / count:F1} ms");
        Assert.True(count >= 2, "the opened and closed transitions were delivered");
        Assert.Equal(0, Metric(scrape, "anomalyvae_alertmanager_dropped_total"));
        await app.StopAsync(cts.Token);

        // The alerts topic: stuck-7's incident opened once and closed once, every record as the schema says.
        var records = ReadAll(alertsTopic, expectAtLeast: 2, cts.Token);
        foreach (var record in records)
            Assert.Empty(Schema.Validate(record.RootElement));
        var stuck = records.Where(r => r.RootElement.GetProperty("entity").GetString() == "stuck-7").ToList();
        Assert.Equal([$"sensors:{topic}:{firstStuck.Partition}:{firstStuck.Offset}:incident_closed", $"sensors:{topic}:{firstStuck.Partition}:{firstStuck.Offset}:incident_opened"],
            stuck.Select(r => r.RootElement.GetProperty("dedup_key").GetString()).Order(StringComparer.Ordinal));
        var closed = stuck.Single(r => r.RootElement.GetProperty("kind").GetString() == "incident_closed").RootElement;
        Assert.Equal(100, closed.GetProperty("anomaly_count").GetInt64());
        Assert.Equal(Start.AddSeconds(399 + 120), closed.GetProperty("closed_at").GetDateTime().ToUniversalTime());
        Assert.Equal(records.Count(r => r.RootElement.GetProperty("kind").GetString() == "incident_opened"),
            await ScalarAsync(database, "SELECT count(*) FROM incidents", cts.Token));
        foreach (var record in records)
            record.Dispose();
    }

    [Fact]
    public async Task With_Alertmanager_away_scoring_neither_stops_nor_stalls_and_undelivered_alerts_are_counted()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        await using var stream = await ServeStream.CreateAsync(infrastructure, "alerts-down", partitions: 2, cts.Token);
        var (topic, deadLetters, database) = stream;
        var configuration = fixture.Configuration(infrastructure, topic, deadLetters, database, $"g-{Guid.NewGuid():N}");
        configuration["Detectors:0:IncidentGap"] = "00:02:00";
        // Nothing listens there; a one-alert queue, one retry, and a re-send every second keep it busy failing.
        configuration["Alertmanager:Url"] = $"http://127.0.0.1:{ServeFixture.FreePort()}";
        configuration["Alertmanager:QueueCapacity"] = "1";
        configuration["Alertmanager:MaxRetries"] = "1";
        configuration["Alertmanager:RequestTimeout"] = "00:00:01";
        configuration["Alertmanager:ResendInterval"] = "00:00:01";
        configuration["Alertmanager:BreakDuration"] = "00:00:01";
        var produced = await ServeFixture.ProduceAsync(infrastructure, topic, StuckSensorEvents(0, 1200), cts.Token);
        await using var app = ServeFixture.Host(configuration);
        var scoring = Stopwatch.StartNew();
        await app.StartAsync(cts.Token);
        await ServeFixture.WaitForOffsetsAsync(database, topic, produced, cts.Token);
        output.WriteLine($"{produced.Count} events committed in {scoring.Elapsed.TotalSeconds:F1} s with Alertmanager away");
        var exposition = app.Services.GetRequiredService<PrometheusExposition>();
        var waited = Stopwatch.StartNew();
        string scrape;
        while (Metric(scrape = exposition.Scrape(), "anomalyvae_alertmanager_dropped_total") < 1
               || Metric(scrape, "anomalyvae_alertmanager_failures_total") < 1)
        {
            Assert.True(waited.Elapsed < TimeSpan.FromMinutes(1), "no drop or failure counted:\n" + scrape);
            await Task.Delay(100, cts.Token);
        }
        output.WriteLine(string.Join('\n', scrape.Split('\n').Where(l => l.StartsWith("anomalyvae_alertmanager", StringComparison.Ordinal))));
        Assert.Equal(0, Metric(scrape, "anomalyvae_alertmanager_sent_total"));
        await app.StopAsync(cts.Token);

        // Every flagged event stored, and stuck-7's incident opened and closed as without alerts.
        var scores = fixture.DirectScores(produced, out double threshold, out _);
        Assert.Equal(scores.Count(s => s.Value > threshold), await ScalarAsync(database, "SELECT count(*) FROM anomalies", cts.Token));
        Assert.Equal(1, await ScalarAsync(database,
            "SELECT count(*) FROM incidents WHERE entity = 'stuck-7' AND anomaly_count = 100 AND closed_at IS NOT NULL", cts.Token));
    }

    /// <summary>One event per second of event time in [<paramref name="from"/>, <paramref name="to"/>) from a fleet of 20,
    /// plus "stuck-7" reporting an impossible reading (a=0, b=8, c=5000) every second from 300 s to 399 s.</summary>
    private static List<byte[]?> StuckSensorEvents(int from, int to)
    {
        var events = new List<byte[]?>();
        var random = new Random(3 + from);
        for (int s = from; s < to; s++)
        {
            var ts = Start.AddSeconds(s).ToString("yyyy-MM-ddTHH:mm:ss.fffZ", CultureInfo.InvariantCulture);
            double a = random.NextDouble() - 0.5;
            events.Add(Encoding.UTF8.GetBytes(string.Create(CultureInfo.InvariantCulture,
                $"{{\"id\":\"m{s % 20}\",\"ts\":\"{ts}\",\"a\":{a:R},\"b\":{2 * a:R},\"c\":{Math.Exp(1 + 0.5 * a):R},\"color\":\"{(a < 0 ? "green" : "blue")}\",\"flag\":{(a > 0 ? "true" : "false")}}}")));
            if (s is >= 300 and < 400)
                events.Add(Encoding.UTF8.GetBytes($"{{\"id\":\"stuck-7\",\"ts\":\"{ts}\",\"a\":0,\"b\":8,\"c\":5000,\"color\":\"red\",\"flag\":false}}"));
        }
        return events;
    }

    /// <summary>The sum of a metric's samples (all label sets) in a scrape; 0 when it has none yet.</summary>
    private static double Metric(string scrape, string name) => scrape.Split('\n')
        .Where(l => l.StartsWith(name + "{", StringComparison.Ordinal) || l.StartsWith(name + " ", StringComparison.Ordinal))
        .Sum(l => double.Parse(l[(l.LastIndexOf(' ') + 1)..], CultureInfo.InvariantCulture));

    /// <summary>Every record of <paramref name="topic"/>: read until at least <paramref name="expectAtLeast"/>, then until quiet.</summary>
    private List<JsonDocument> ReadAll(string topic, int expectAtLeast, CancellationToken cancellationToken)
    {
        using var consumer = new ConsumerBuilder<Ignore, byte[]>(infrastructure.ConsumerConfig($"alerts-{Guid.NewGuid():N}")).Build();
        consumer.Subscribe(topic);
        var records = new List<JsonDocument>();
        var quiet = DateTime.UtcNow.AddSeconds(5);
        while (records.Count < expectAtLeast || DateTime.UtcNow < quiet)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var result = consumer.Consume(TimeSpan.FromMilliseconds(200));
            if (result?.Message is null)
                continue;
            records.Add(JsonDocument.Parse(result.Message.Value));
            if (records.Count >= expectAtLeast)
                quiet = DateTime.UtcNow.AddSeconds(2);
        }
        consumer.Close();
        return records;
    }

    private static async Task<long> ScalarAsync(string database, string sql, CancellationToken cancellationToken)
    {
        await using var connection = new NpgsqlConnection(database);
        await connection.OpenAsync(cancellationToken);
        await using var command = new NpgsqlCommand(sql, connection);
        return Convert.ToInt64(await command.ExecuteScalarAsync(cancellationToken), CultureInfo.InvariantCulture);
    }
}
