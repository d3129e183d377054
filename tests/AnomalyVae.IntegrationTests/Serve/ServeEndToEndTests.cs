using System.Globalization;
using System.Net;
using System.Text.Json;
using AnomalyVae.IntegrationTests.Infrastructure;
using AnomalyVae.Scoring;
using AnomalyVae.Service;
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
        var topic = await infrastructure.CreateTopicAsync("serve-e2e", partitions: 3, cts.Token);
        var deadLetters = await infrastructure.CreateTopicAsync("serve-e2e-dlq", partitions: 1, cts.Token);
        var database = await infrastructure.CreateDatabaseAsync("serve", cts.Token);
        try
        {
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

            await AssertStoredAsync(database, topic, deadLetters, first, cts.Token);

            // Restart on the same topic and database: nothing is scored twice; new events are scored once.
            var second = await ServeFixture.ProduceAsync(infrastructure, topic, ServeFixture.Events(600, seed: 12), cts.Token);
            var all = first.Concat(second).ToList();
            configuration["Http:Port"] = "0";
            await using (var app = ServeFixture.Host(configuration))
            {
                await app.StartAsync(cts.Token);
                await ServeFixture.WaitForOffsetsAsync(database, topic, all, cts.Token);
                await app.StopAsync(cts.Token);
            }

            await AssertStoredAsync(database, topic, deadLetters, all, cts.Token);
        }
        finally
        {
            await infrastructure.DropDatabaseAsync(database, CancellationToken.None);
        }
    }

    [Fact]
    public async Task A_database_outage_pauses_the_stream_and_it_resumes_by_itself_losing_nothing()
    {
        using var cts = new CancellationTokenSource(Patience);
        var topic = await infrastructure.CreateTopicAsync("serve-outage", partitions: 2, cts.Token);
        var deadLetters = await infrastructure.CreateTopicAsync("serve-outage-dlq", partitions: 1, cts.Token);
        var database = await infrastructure.CreateDatabaseAsync("outage", cts.Token);
        var name = new NpgsqlConnectionStringBuilder(database).Database!;
        try
        {
            int port = ServeFixture.FreePort();
            var configuration = fixture.Configuration(infrastructure, topic, deadLetters, database, $"g-{Guid.NewGuid():N}", port);
            var events = await ServeFixture.ProduceAsync(infrastructure, topic, ServeFixture.Events(1000, seed: 21), cts.Token);
            await using var app = ServeFixture.Host(configuration);
            await app.StartAsync(cts.Token);
            await ServeFixture.WaitForOffsetsAsync(database, topic, events, cts.Token);

            // The outage: existing sessions killed, new ones refused, while events keep arriving.
            await SetDatabaseAvailableAsync(name, available: false, cts.Token);
            events.AddRange(await ServeFixture.ProduceAsync(infrastructure, topic, ServeFixture.Events(2000, seed: 22), cts.Token));
            using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}") };
            HttpResponseMessage ready;
            var stalledBy = DateTime.UtcNow.AddSeconds(30);
            do
            {
                await Task.Delay(250, cts.Token);
                ready = await http.GetAsync("/readyz", cts.Token);
            }
            while (ready.StatusCode == HttpStatusCode.OK && DateTime.UtcNow < stalledBy);
            Assert.Equal(HttpStatusCode.ServiceUnavailable, ready.StatusCode);
            Assert.Contains("PostgreSQL", await ready.Content.ReadAsStringAsync(cts.Token), StringComparison.Ordinal);
            await Task.Delay(TimeSpan.FromSeconds(5), cts.Token);

            await SetDatabaseAvailableAsync(name, available: true, cts.Token);
            var back = DateTime.UtcNow;
            events.AddRange(await ServeFixture.ProduceAsync(infrastructure, topic, ServeFixture.Events(500, seed: 23), cts.Token));
            await ServeFixture.WaitForOffsetsAsync(database, topic, events, cts.Token);
            Console.WriteLine($"caught up {(DateTime.UtcNow - back).TotalSeconds:F1} s after the database returned");
            Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/readyz", cts.Token)).StatusCode);
            await app.StopAsync(cts.Token);
            await AssertStoredAsync(database, topic, deadLetters, events, cts.Token);
        }
        finally
        {
            await SetDatabaseAvailableAsync(name, available: true, CancellationToken.None);
            await infrastructure.DropDatabaseAsync(database, CancellationToken.None);
        }
    }

    [Fact]
    public async Task Two_hosts_in_one_group_split_the_partitions_and_one_leaving_mid_stream_loses_and_duplicates_nothing()
    {
        using var cts = new CancellationTokenSource(Patience);
        var topic = await infrastructure.CreateTopicAsync("serve-group", partitions: 4, cts.Token);
        var deadLetters = await infrastructure.CreateTopicAsync("serve-group-dlq", partitions: 1, cts.Token);
        var database = await infrastructure.CreateDatabaseAsync("group", cts.Token);
        try
        {
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
            await AssertStoredAsync(database, topic, deadLetters, events, cts.Token);
        }
        finally
        {
            await infrastructure.DropDatabaseAsync(database, CancellationToken.None);
        }
    }

    private async Task SetDatabaseAvailableAsync(string name, bool available, CancellationToken cancellationToken)
    {
        await using var connection = new NpgsqlConnection(infrastructure.PostgresConnectionString);
        await connection.OpenAsync(cancellationToken);
        await using var command = new NpgsqlCommand(
            $"ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS {(available ? "true" : "false")};"
            + (available ? "" : $"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}';"), connection);
        await command.ExecuteNonQueryAsync(cancellationToken);
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

    /// <summary>Rows, dead letters and statistics are exactly what the events imply.</summary>
    private async Task AssertStoredAsync(string database, string topic, string deadLetterTopic, List<ProducedEvent> events, CancellationToken cancellationToken)
    {
        var expected = fixture.DirectScores(events, out double threshold, out var undecodable);
        var flagged = expected.Where(e => e.Value > threshold).ToDictionary(e => e.Key, e => e.Value);
        Assert.InRange(flagged.Count, events.Count / 60, events.Count / 10);

        await using var connection = new NpgsqlConnection(database);
        await connection.OpenAsync(cancellationToken);
        var rows = new List<(int Partition, long Offset, string? Entity, DateTime? EventTime, double Score, double PValue, string Contributions, string Event)>();
        await using (var command = new NpgsqlCommand(
            "SELECT \"partition\", \"offset\", entity, event_time, score, p_value, contributions::text, event::text FROM anomalies WHERE detector = 'sensors' AND topic = $1",
            connection))
        {
            command.Parameters.AddWithValue(topic);
            await using var reader = await command.ExecuteReaderAsync(cancellationToken);
            while (await reader.ReadAsync(cancellationToken))
            {
                rows.Add((reader.GetInt32(0), reader.GetInt64(1), reader.IsDBNull(2) ? null : reader.GetString(2),
                    reader.IsDBNull(3) ? null : reader.GetDateTime(3), reader.GetDouble(4), reader.GetDouble(5), reader.GetString(6), reader.GetString(7)));
            }
        }

        Assert.Equal(flagged.Keys.Order(), rows.Select(r => (r.Partition, r.Offset)).Order());
        var byKey = events.ToDictionary(e => (e.Partition, e.Offset));
        int base64 = 0;
        foreach (var row in rows)
        {
            float score = flagged[(row.Partition, row.Offset)];
            Assert.Equal(score, row.Score, 1e-4 * Math.Max(1, Math.Abs(score)));
            Assert.InRange(row.PValue, 0, 0.05);
            using var source = JsonDocument.Parse(byKey[(row.Partition, row.Offset)].Payload!);
            Assert.Equal(source.RootElement.GetProperty("id").GetString(), row.Entity);
            Assert.Equal(DateTime.Parse(source.RootElement.GetProperty("ts").GetString()!, CultureInfo.InvariantCulture,
                DateTimeStyles.AdjustToUniversal | DateTimeStyles.AssumeUniversal), row.EventTime!.Value.ToUniversalTime());
            using var contributions = JsonDocument.Parse(row.Contributions);
            var scores = contributions.RootElement.EnumerateArray().Select(c => c.GetProperty("score").GetDouble()).ToArray();
            Assert.Equal(5, scores.Length);
            Assert.Equal(scores.OrderDescending(), scores);
            using var stored = JsonDocument.Parse(row.Event);
            if (stored.RootElement.TryGetProperty("payload_base64", out var encoded))
            {
                // jsonb cannot hold \u0000 or 1e999999: those events are kept byte for byte as base64.
                Assert.Equal(byKey[(row.Partition, row.Offset)].Payload, encoded.GetBytesFromBase64());
                base64++;
            }
            else
            {
                Assert.Equal(source.RootElement.GetProperty("a").GetDouble(), stored.RootElement.GetProperty("a").GetDouble());
            }
        }
        Assert.Equal(events.Count(e => e.Payload is { } p && p.AsSpan().IndexOf("\\u0000"u8) >= 0 && flagged.ContainsKey((e.Partition, e.Offset))), base64);
        Assert.True(base64 > 0);

        // Statistics: every decodable event scored once, every other dead-lettered once.
        await using (var command = new NpgsqlCommand(
            "SELECT sum(events_scored)::bigint, sum(events_flagged)::bigint, sum(events_dead_lettered)::bigint, count(*) FILTER (WHERE score_p50 IS NULL) FROM scoring_stats WHERE detector = 'sensors'",
            connection))
        {
            await using var reader = await command.ExecuteReaderAsync(cancellationToken);
            Assert.True(await reader.ReadAsync(cancellationToken));
            Assert.Equal(expected.Count, reader.GetInt64(0));
            Assert.Equal(flagged.Count, reader.GetInt64(1));
            Assert.Equal(undecodable.Count, reader.GetInt64(2));
            Assert.Equal(0, reader.GetInt64(3));
        }

        // Dead letters: every undecodable event, with its reason (at-least-once: duplicates would be allowed,
        // but nothing here makes the service resend, so each appears once).
        var letters = ReadDeadLetters(deadLetterTopic, undecodable.Count, cancellationToken);
        Assert.Equal(undecodable.Order(), letters.Select(l => (l.Partition, l.Offset)).Order());
        foreach (var letter in letters)
        {
            Assert.Equal("sensors", letter.Detector);
            Assert.Equal(topic, letter.Topic);
            Assert.Matches("^(malformed_json|not_an_object|wrong_type|not_finite|out_of_range|duplicate_key|bad_event_time)$", letter.Reason);
            Assert.Equal(byKey[(letter.Partition, letter.Offset)].Payload ?? [], letter.Payload.ToArray());
        }
        Assert.Equal(7, letters.Select(l => l.Reason).Distinct().Count());
    }

    private List<DeadLetter> ReadDeadLetters(string topic, int expected, CancellationToken cancellationToken)
    {
        using var consumer = new ConsumerBuilder<Ignore, byte[]>(infrastructure.ConsumerConfig($"dlq-{Guid.NewGuid():N}")).Build();
        consumer.Subscribe(topic);
        var letters = new List<DeadLetter>();
        var quiet = DateTime.UtcNow.AddSeconds(5);
        // Read until the expected count, then a little longer to catch any extra letter.
        while (letters.Count < expected || DateTime.UtcNow < quiet)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var result = consumer.Consume(TimeSpan.FromMilliseconds(200));
            if (result?.Message is null)
                continue;
            letters.Add(DeadLetter.Parse(result.Message.Value));
            if (letters.Count >= expected)
                quiet = DateTime.UtcNow.AddSeconds(2);
        }
        consumer.Close();
        return letters;
    }
}
