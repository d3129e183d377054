using System.Globalization;
using System.Net;
using System.Text.Json;
using AnomalyVae.IntegrationTests.Infrastructure;
using AnomalyVae.Streaming;
using Confluent.Kafka;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;

namespace AnomalyVae.IntegrationTests.Serve;

/// <summary>
/// The streaming scorer end to end against the real broker and database: known events in, exactly the expected
/// anomaly rows, dead letters and statistics out; a restart adds nothing twice; a bad model stops start-up.
/// </summary>
[Collection(InfrastructureCollection.Name)]
public sealed class ServeEndToEndTests(TestInfrastructure infrastructure, ServeFixture fixture) : IClassFixture<ServeFixture>
{
    private static readonly TimeSpan Patience = TimeSpan.FromMinutes(2);

    [Fact]
    public async Task Scores_flags_dead_letters_and_restarts_without_duplicates()
    {
        using var cts = new CancellationTokenSource(Patience);
        await using var stream = await ServeStream.CreateAsync(infrastructure, "serve-e2e", partitions: 3, cts.Token);
        var (topic, deadLetters, database) = stream;
        var first = await ServeFixture.ProduceAsync(infrastructure, topic, ServeFixture.Events(4000, seed: 11), cts.Token);
        int port = ServeFixture.FreePort();
        var configuration = fixture.Configuration(infrastructure, topic, deadLetters, database, $"g-{Guid.NewGuid():N}", port);

        await using (var app = ServeFixture.Host(configuration))
        {
            await app.StartAsync(cts.Token);
            await ServeFixture.WaitForOffsetsAsync(database, topic, first, cts.Token);
            using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}") };
            Assert.Equal("ok\n", await http.GetStringAsync("/healthz", cts.Token));
            var ready = await http.GetAsync("/readyz", cts.Token);
            Assert.True(ready.StatusCode == HttpStatusCode.OK, await ready.Content.ReadAsStringAsync(cts.Token));
            // Counters and the lag gauge are updated just after the commit that the offsets show; give them a moment.
            const string NoLag = "anomalyvae_consumer_lag{detector=\"sensors\",partition=\"0\"} 0\n";
            string allConsumed = $"anomalyvae_events_consumed_total{{detector=\"sensors\"}} {first.Count}\n";
            int malformed = first.Count(e => e.Payload is null || e.Payload.AsSpan().StartsWith("not json"u8));
            string malformedLine = $"anomalyvae_events_dead_lettered_total{{detector=\"sensors\",reason=\"malformed_json\"}} {malformed}\n";
            bool Settled(string m) => m.Contains(NoLag, StringComparison.Ordinal) && m.Contains(allConsumed, StringComparison.Ordinal)
                && m.Contains(malformedLine, StringComparison.Ordinal);
            var metrics = await http.GetStringAsync("/metrics", cts.Token);
            for (var by = DateTime.UtcNow.AddSeconds(10);
                 !Settled(metrics) && DateTime.UtcNow < by;)
            {
                await Task.Delay(100, cts.Token);
                metrics = await http.GetStringAsync("/metrics", cts.Token);
            }
            Assert.Contains("# TYPE anomalyvae_events_consumed_total counter", metrics, StringComparison.Ordinal);
            Assert.Contains(allConsumed, metrics, StringComparison.Ordinal);
            Assert.Contains("# TYPE anomalyvae_commit_seconds histogram", metrics, StringComparison.Ordinal);
            Assert.Contains(malformedLine, metrics, StringComparison.Ordinal);
            Assert.True(metrics.Contains(NoLag, StringComparison.Ordinal), string.Join("\n", metrics.Split('\n').Where(l => l.Contains("lag", StringComparison.Ordinal) || l.Contains("consumed", StringComparison.Ordinal))));
            await app.StopAsync(cts.Token);
        }

        await fixture.AssertStoredAsync(infrastructure, database, topic, deadLetters, first, cts.Token);

        // Restart on the same topic and database: nothing is scored twice; new events are scored once.
        var second = await ServeFixture.ProduceAsync(infrastructure, topic, ServeFixture.Events(600, seed: 12), cts.Token);
        var all = first.Concat(second).ToList();
        configuration["Http:Port"] = "0";
        await ServeFixture.ServeUntilStoredAsync(configuration, database, topic, all, cts.Token);

        await fixture.AssertStoredAsync(infrastructure, database, topic, deadLetters, all, cts.Token);
    }

    [Fact]
    public async Task Two_hosts_in_one_group_split_the_partitions_and_one_leaving_mid_stream_loses_and_duplicates_nothing()
    {
        using var cts = new CancellationTokenSource(Patience);
        await using var stream = await ServeStream.CreateAsync(infrastructure, "serve-group", partitions: 4, cts.Token);
        var (topic, deadLetters, database) = stream;
        var configuration = fixture.Configuration(infrastructure, topic, deadLetters, database, $"g-{Guid.NewGuid():N}");
        await using var first = ServeFixture.Host(configuration);
        await using var second = ServeFixture.Host(configuration);
        await first.StartAsync(cts.Token);
        await second.StartAsync(cts.Token);
        // Both members own partitions (and together all four) before events flow.
        int[] Owned(WebApplication app) => app.Services.GetRequiredService<ServiceHealth>().Assignments.GetValueOrDefault("sensors", []);
        while (!(Owned(first).Length > 0 && Owned(second).Length > 0 && Owned(first).Concat(Owned(second)).Order().SequenceEqual([0, 1, 2, 3])))
            await Task.Delay(100, cts.Token);
        var events = await ServeFixture.ProduceAsync(infrastructure, topic, ServeFixture.Events(1500, seed: 31), cts.Token);
        await ServeFixture.WaitForOffsetsAsync(database, topic, events, cts.Token);

        // More events arrive while one host leaves: the other takes its partitions over.
        var more = ServeFixture.ProduceAsync(infrastructure, topic, ServeFixture.Events(3000, seed: 32), cts.Token);
        await first.StopAsync(cts.Token);
        events.AddRange(await more);
        await ServeFixture.WaitForOffsetsAsync(database, topic, events, cts.Token);
        await second.StopAsync(cts.Token);
        await fixture.AssertStoredAsync(infrastructure, database, topic, deadLetters, events, cts.Token);
    }

    [Fact]
    public async Task Without_a_reachable_broker_the_service_stays_up_but_is_not_ready()
    {
        using var cts = new CancellationTokenSource(Patience);
        var database = await infrastructure.CreateDatabaseAsync("nokafka", cts.Token);
        try
        {
            int port = ServeFixture.FreePort();
            var configuration = fixture.Configuration(infrastructure, "sensors", "sensors.dlq", database, "g", port);
            configuration["Kafka:BootstrapServers"] = $"127.0.0.1:{ServeFixture.FreePort()}";
            await using var app = ServeFixture.Host(configuration);
            await app.StartAsync(cts.Token);
            using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}") };
            Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/healthz", cts.Token)).StatusCode);
            var ready = await http.GetAsync("/readyz", cts.Token);
            var body = await ready.Content.ReadAsStringAsync(cts.Token);
            Assert.Equal(HttpStatusCode.ServiceUnavailable, ready.StatusCode);
            using var json = JsonDocument.Parse(body);
            Assert.False(json.RootElement.GetProperty("ready").GetBoolean());
            var problems = json.RootElement.GetProperty("problems").EnumerateArray().Select(p => p.GetString()!).ToList();
            Assert.Contains(problems, p => p.StartsWith("Kafka is not reachable", StringComparison.Ordinal));
            Assert.DoesNotContain(problems, p => p.Contains("PostgreSQL", StringComparison.Ordinal));
            await app.StopAsync(cts.Token);
        }
        finally
        {
            await infrastructure.DropDatabaseAsync(database, CancellationToken.None);
        }
    }

    [Theory]
    [InlineData("garbage")]
    [InlineData("missing")]
    public async Task A_model_that_does_not_load_stops_start_up_naming_detector_and_file(string kind)
    {
        var path = Path.Combine(fixture.Directory, $"bad-{kind}.onnx");
        if (kind == "garbage")
            await File.WriteAllBytesAsync(path, [1, 2, 3, 4, 5, 6, 7, 8]);
        var configuration = fixture.Configuration(infrastructure, "t", "t.dlq", "Host=127.0.0.1;Port=1;Username=x", "g", model: path);
        var error = Assert.Throws<ServiceConfigurationException>(() => ServeFixture.Host(configuration));
        Assert.Contains("Detector 'sensors'", error.Message, StringComparison.Ordinal);
        Assert.Contains(path, error.Message, StringComparison.Ordinal);
    }
}
