using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text.Json;
using AnomalyVae.Events;
using AnomalyVae.Inference;
using AnomalyVae.IntegrationTests.Infrastructure;
using AnomalyVae.Streaming;
using AnomalyVae.Tools;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using Xunit.Abstractions;

namespace AnomalyVae.IntegrationTests.Serve;

/// <summary>
/// Bad input and outages against the real broker and database: 10,000 bad payloads mixed into valid traffic each
/// become exactly one dead letter with the reason they were built with; the broker stopped, or PostgreSQL stopped
/// for 30 s, while serve runs makes it not ready, and when the server returns serve resumes by itself, every
/// event scored or dead-lettered exactly once.
/// </summary>
[Collection(InfrastructureCollection.Name)]
public sealed class ServeRobustnessTests(TestInfrastructure infrastructure, ServeFixture fixture, ITestOutputHelper output) : IClassFixture<ServeFixture>
{
    private const int MaxPayloadBytes = 2048;
    private static readonly TimeSpan Patience = TimeSpan.FromMinutes(3);

    [Fact]
    public async Task Ten_thousand_bad_payloads_in_valid_traffic_become_one_dead_letter_each_with_their_reason_and_every_valid_event_is_scored_once()
    {
        using var cts = new CancellationTokenSource(Patience);
        await using var stream = await ServeStream.CreateAsync(infrastructure, "serve-fuzz", partitions: 4, cts.Token);
        var (topic, deadLetters, database) = stream;
        // Valid traffic (the fixture's events without its own bad ones) with 10,000 bad payloads shuffled in.
        var valid = ServeFixture.Events(22_000, seed: 61).Where((_, i) => i % 40 != 39).Select(e => e!).ToList();
        BadEventStream generator;
        using (var bundle = ModelBundle.Load(fixture.ModelPath))
            generator = new BadEventStream(bundle.Schema, "id", "ts", MaxPayloadBytes, seed: 62);
        var random = new Random(63);
        var mixed = valid.Select(v => (Payload: v, Reason: (string?)null)).ToList();
        for (int i = 0; i < 10_000; i++)
        {
            var bad = generator.Next(valid[random.Next(valid.Count)]);
            mixed.Add((bad.Payload, bad.Reason));
        }
        for (int i = mixed.Count - 1; i > 0; i--)
        {
            int j = random.Next(i + 1);
            (mixed[i], mixed[j]) = (mixed[j], mixed[i]);
        }

        var events = await ServeFixture.ProduceAsync(infrastructure, topic, [.. mixed.Select(m => (byte[]?)m.Payload)], cts.Token);
        var reasons = new Dictionary<(int, long), string>();
        for (int i = 0; i < events.Count; i++)
        {
            if (mixed[i].Reason is { } reason)
                reasons[(events[i].Partition, events[i].Offset)] = reason;
        }

        int port = ServeFixture.FreePort();
        var configuration = fixture.Configuration(infrastructure, topic, deadLetters, database, $"g-{Guid.NewGuid():N}", port);
        configuration["Scoring:MaxPayloadBytes"] = MaxPayloadBytes.ToString(CultureInfo.InvariantCulture);
        var clock = Stopwatch.StartNew();
        await using (var app = ServeFixture.Host(configuration))
        {
            await app.StartAsync(cts.Token);
            await ServeFixture.WaitForOffsetsAsync(database, topic, events, cts.Token);
            output.WriteLine($"{events.Count} events ({reasons.Count} bad) consumed to the end in {clock.Elapsed.TotalSeconds:F1} s");

            // The per-reason counters agree (they are updated right after the commit the offsets show).
            using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}") };
            var expectedLines = reasons.GroupBy(r => r.Value).Select(g =>
                $"anomalyvae_events_dead_lettered_total{{detector=\"sensors\",reason=\"{g.Key}\"}} {g.Count()}\n").ToList();
            var metrics = await http.GetStringAsync("/metrics", cts.Token);
            for (var by = DateTime.UtcNow.AddSeconds(10); !expectedLines.All(l => metrics.Contains(l, StringComparison.Ordinal)) && DateTime.UtcNow < by;)
            {
                await Task.Delay(100, cts.Token);
                metrics = await http.GetStringAsync("/metrics", cts.Token);
            }
            Assert.All(expectedLines, l => Assert.Contains(l, metrics, StringComparison.Ordinal));
            await app.StopAsync(cts.Token);
        }

        // Every reason the decoder has occurs, and the decoder itself agrees with how each payload was built.
        Assert.Equal(Enum.GetValues<EventDecodeError>().Where(e => e != EventDecodeError.None).Select(EventDecodeResult.CodeOf).Order(),
            reasons.Values.Distinct().Order());
        var expected = fixture.DirectScores(events, out double threshold, out var undecodable, MaxPayloadBytes);
        Assert.Equal(reasons.Keys.Order(), undecodable.Order());
        var flagged = expected.Where(e => e.Value > threshold).Select(e => e.Key).Order().ToList();
        Assert.NotEmpty(flagged);

        await ServeFixture.AssertRowsAndTotalsAsync(database, flagged, valid.Count, reasons.Count, cts.Token);

        // Exactly one dead letter per bad payload, with its reason and its bytes.
        var letters = ServeFixture.ReadDeadLetters(infrastructure, deadLetters, reasons.Count, cts.Token);
        Assert.Equal(reasons.Count, letters.Count);
        var byKey = events.ToDictionary(e => (e.Partition, e.Offset));
        foreach (var letter in letters)
        {
            var key = (letter.Partition, letter.Offset);
            Assert.True(reasons.TryGetValue(key, out var reason), $"dead letter for a valid event {key}: {letter}");
            Assert.Equal(reason, letter.Reason);
            Assert.Equal(byKey[key].Payload, letter.Payload.ToArray());
        }
        Assert.Equal(reasons.Keys.Order(), letters.Select(l => (l.Partition, l.Offset)).Order());
    }

    [Fact]
    public async Task With_the_broker_stopped_serve_stays_up_not_ready_and_resumes_by_itself_losing_and_duplicating_nothing()
    {
        using var cts = new CancellationTokenSource(Patience);
        await using var stream = await ServeStream.CreateAsync(infrastructure, "serve-kafka-outage", partitions: 2, cts.Token);
        var (topic, deadLetters, database) = stream;
        int port = ServeFixture.FreePort();
        var configuration = fixture.Configuration(infrastructure, topic, deadLetters, database, $"g-{Guid.NewGuid():N}", port);
        var events = await ServeFixture.ProduceAsync(infrastructure, topic, ServeFixture.Events(1000, seed: 71), cts.Token);
        await using var app = ServeFixture.Host(configuration);
        await app.StartAsync(cts.Token);
        await ServeFixture.WaitForOffsetsAsync(database, topic, events, cts.Token);
        // More events, and the broker goes away while serve may still be working on them.
        events.AddRange(await ServeFixture.ProduceAsync(infrastructure, topic, ServeFixture.Events(2000, seed: 72), cts.Token));
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}") };
        try
        {
            await infrastructure.StopKafkaAsync(cts.Token);
            var stopped = Stopwatch.StartNew();
            var problems = await WaitUntilNotReadyAsync(http, cts.Token);
            Assert.Contains(problems, p => p.Contains("Kafka", StringComparison.Ordinal));
            output.WriteLine($"not ready {stopped.Elapsed.TotalSeconds:F1} s after the broker stopped: {string.Join("; ", problems)}");
            // Down for a while: serve keeps running (no restart), alive but not ready.
            await Task.Delay(Max(TimeSpan.Zero, TimeSpan.FromSeconds(15) - stopped.Elapsed), cts.Token);
            Assert.Equal("ok\n", await http.GetStringAsync("/healthz", cts.Token));
            Assert.True(app.Services.GetRequiredService<ServiceHealth>().IsRunning("sensors"));
            Assert.Equal(HttpStatusCode.ServiceUnavailable, (await http.GetAsync("/readyz", cts.Token)).StatusCode);
        }
        finally
        {
            await infrastructure.StartKafkaAsync(CancellationToken.None);
        }

        var back = Stopwatch.StartNew();
        events.AddRange(await ServeFixture.ProduceAsync(infrastructure, topic, ServeFixture.Events(1000, seed: 73), cts.Token));
        await ServeFixture.WaitForOffsetsAsync(database, topic, events, cts.Token);
        output.WriteLine($"every event committed {back.Elapsed.TotalSeconds:F1} s after the broker was back");
        await WaitUntilReadyAsync(http, cts.Token);
        await app.StopAsync(cts.Token);
        await fixture.AssertStoredAsync(infrastructure, database, topic, deadLetters, events, cts.Token);
    }

    [Fact]
    public async Task With_PostgreSQL_stopped_for_30_s_serve_pauses_not_ready_and_resumes_by_itself_losing_and_duplicating_nothing()
    {
        using var cts = new CancellationTokenSource(Patience);
        await using var stream = await ServeStream.CreateAsync(infrastructure, "serve-pg-outage", partitions: 2, cts.Token);
        var (topic, deadLetters, database) = stream;
        int port = ServeFixture.FreePort();
        var configuration = fixture.Configuration(infrastructure, topic, deadLetters, database, $"g-{Guid.NewGuid():N}", port);
        var events = await ServeFixture.ProduceAsync(infrastructure, topic, ServeFixture.Events(1000, seed: 81), cts.Token);
        await using var app = ServeFixture.Host(configuration);
        await app.StartAsync(cts.Token);
        await ServeFixture.WaitForOffsetsAsync(database, topic, events, cts.Token);
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}") };
        Stopwatch back;
        try
        {
            await infrastructure.StopPostgresAsync(cts.Token);
            var stopped = Stopwatch.StartNew();
            // Events keep arriving during the outage.
            events.AddRange(await ServeFixture.ProduceAsync(infrastructure, topic, ServeFixture.Events(2000, seed: 82), cts.Token));
            var problems = await WaitUntilNotReadyAsync(http, cts.Token);
            Assert.Contains(problems, p => p.Contains("PostgreSQL", StringComparison.Ordinal));
            output.WriteLine($"not ready {stopped.Elapsed.TotalSeconds:F1} s after PostgreSQL stopped: {string.Join("; ", problems)}");
            events.AddRange(await ServeFixture.ProduceAsync(infrastructure, topic, ServeFixture.Events(1000, seed: 83), cts.Token));
            await Task.Delay(Max(TimeSpan.Zero, TimeSpan.FromSeconds(30) - stopped.Elapsed), cts.Token);
            Assert.Equal("ok\n", await http.GetStringAsync("/healthz", cts.Token));
            Assert.True(app.Services.GetRequiredService<ServiceHealth>().IsRunning("sensors"));
        }
        finally
        {
            await infrastructure.StartPostgresAsync(CancellationToken.None);
            back = Stopwatch.StartNew();
        }

        await ServeFixture.WaitForOffsetsAsync(database, topic, events, cts.Token);
        output.WriteLine($"the events of the outage committed {back.Elapsed.TotalSeconds:F1} s after PostgreSQL was back");
        events.AddRange(await ServeFixture.ProduceAsync(infrastructure, topic, ServeFixture.Events(500, seed: 84), cts.Token));
        await ServeFixture.WaitForOffsetsAsync(database, topic, events, cts.Token);
        await WaitUntilReadyAsync(http, cts.Token);
        await app.StopAsync(cts.Token);
        await fixture.AssertStoredAsync(infrastructure, database, topic, deadLetters, events, cts.Token);
    }

    private static TimeSpan Max(TimeSpan a, TimeSpan b) => a > b ? a : b;

    /// <summary>Polls /readyz until it answers 503 (failing after 30 s); returns the problems it names.</summary>
    private static async Task<List<string>> WaitUntilNotReadyAsync(HttpClient http, CancellationToken cancellationToken)
    {
        for (var by = DateTime.UtcNow.AddSeconds(30); ; await Task.Delay(200, cancellationToken))
        {
            var ready = await http.GetAsync("/readyz", cancellationToken);
            if (ready.StatusCode == HttpStatusCode.ServiceUnavailable)
            {
                using var json = JsonDocument.Parse(await ready.Content.ReadAsStringAsync(cancellationToken));
                Assert.False(json.RootElement.GetProperty("ready").GetBoolean());
                return [.. json.RootElement.GetProperty("problems").EnumerateArray().Select(p => p.GetString()!)];
            }
            Assert.Equal(HttpStatusCode.OK, ready.StatusCode);
            Assert.True(DateTime.UtcNow < by, "/readyz stayed 200 for 30 s of outage");
        }
    }

    /// <summary>Polls /readyz until it answers 200 (failing after 30 s).</summary>
    private static async Task WaitUntilReadyAsync(HttpClient http, CancellationToken cancellationToken)
    {
        for (var by = DateTime.UtcNow.AddSeconds(30); ; await Task.Delay(200, cancellationToken))
        {
            var ready = await http.GetAsync("/readyz", cancellationToken);
            if (ready.StatusCode == HttpStatusCode.OK)
                return;
            Assert.True(DateTime.UtcNow < by, $"/readyz not ready 30 s after the outage: {await ready.Content.ReadAsStringAsync(cancellationToken)}");
        }
    }
}
