using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using AnomalyVae.Events;
using AnomalyVae.Inference;
using AnomalyVae.IntegrationTests.Infrastructure;
using AnomalyVae.Model;
using AnomalyVae.Streaming;
using AnomalyVae.Training;
using AnomalyVae.Training.Engine;
using Confluent.Kafka;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Configuration;
using Npgsql;

namespace AnomalyVae.IntegrationTests.Serve;

/// <summary>One event as produced: where it landed and its bytes (null = a Kafka message without value).</summary>
internal sealed record ProducedEvent(int Partition, long Offset, byte[]? Payload);

/// <summary>
/// What the serve tests share: a small model trained once on mixed data (numeric, log-numeric, categorical,
/// binary), an event generator with anomalies and malformed payloads by construction, a producer, and the
/// host built through <see cref="ServeHost.Build"/> exactly as <c>anomalyvae serve</c> builds it.
/// </summary>
public sealed class ServeFixture : IDisposable
{
    private static readonly string[] Colors = ["red", "green", "blue", "black"];

    public ServeFixture()
    {
        Directory = Path.Combine(Path.GetTempPath(), $"serve-tests-{Guid.NewGuid():N}");
        System.IO.Directory.CreateDirectory(Directory);
        var csv = new StringBuilder("id,a,b,c,color,flag\n");
        var random = new Random(5);
        for (int i = 0; i < 3000; i++)
        {
            var (a, b, c, color, flag) = Normal(random);
            csv.Append(CultureInfo.InvariantCulture, $"m{i % 20},{a:R},{b:R},{c:R},{Colors[color]},{(flag ? "true" : "false")}\n");
        }
        var data = Path.Combine(Directory, "train.csv");
        File.WriteAllText(data, csv.ToString());
        var spec = FeatureSpec.Parse(
            """{"features":[{"name":"a","kind":"numeric"},{"name":"b","kind":"numeric"},{"name":"c","kind":"numeric","log":true},{"name":"color","kind":"categorical"},{"name":"flag","kind":"binary"}],"ignore":["id"]}""");
        var options = new VaeTrainingOptions { Hidden = [16, 8], Latent = 3, Epochs = 5, Threads = 1, Seed = 7, ValidationFraction = 0.25 };
        ModelPath = Path.Combine(Directory, "sensors.onnx");
        Trainer.Train(data, spec, options).Save(ModelPath);
        _windowed = new Lazy<string>(() =>
        {
            // The same data as a windowed model: each machine's last 4 events ("id" is the entity, rows in order).
            var path = Path.Combine(Directory, "sensors-windowed.onnx");
            var features = FeatureSpec.Parse(
                """{"features":[{"name":"a","kind":"numeric"},{"name":"b","kind":"numeric"},{"name":"c","kind":"numeric","log":true},{"name":"color","kind":"categorical"},{"name":"flag","kind":"binary"}]}""");
            Trainer.TrainWindowed(data, features, "id", null, steps: WindowSteps, options).Save(path);
            return path;
        });
    }

    /// <summary>W of <see cref="WindowedModelPath"/>.</summary>
    internal const int WindowSteps = 4;

    private readonly Lazy<string> _windowed;

    /// <summary>A windowed model (W = <see cref="WindowSteps"/>, entity "id") of the same features, trained on first use.</summary>
    public string WindowedModelPath => _windowed.Value;

    public string Directory { get; }

    public string ModelPath { get; }

    public void Dispose() => System.IO.Directory.Delete(Directory, recursive: true);

    /// <summary>Events: mostly normal, every 50th anomalous (correlations broken, c × 1000), every 40th bad.
    /// <paramref name="shift"/> moves the latent "a" (and with it b, c and color) by that many standard deviations:
    /// still consistent events, from a population the model was not trained on.</summary>
    internal static List<byte[]?> Events(int count, int seed, double shift = 0)
    {
        var random = new Random(seed);
        var events = new List<byte[]?>(count);
        var start = new DateTime(2026, 1, 1, 0, 0, 0, DateTimeKind.Utc);
        for (int i = 0; i < count; i++)
        {
            if (i % 40 == 39)
            {
                events.Add(Bad(i / 40));
                continue;
            }
            var (a, b, c, color, flag) = Normal(random, shift);
            bool anomaly = i % 50 == 7;
            if (anomaly)
            {
                b = -3 * a + 8;
                c *= 1000;
                color = (color + 2) % 4;
            }
            var ts = start.AddSeconds(i).ToString("yyyy-MM-ddTHH:mm:ss.fffZ", CultureInfo.InvariantCulture);
            string extra = i % 50 == 7 && i % 100 == 7 ? ",\"note\":\"nul \\u0000 inside\",\"big\":1e999999" : "";
            string json = string.Create(CultureInfo.InvariantCulture,
                $"{{\"id\":\"m{i % 20}\",\"ts\":\"{ts}\",\"a\":{a:R},\"b\":{b:R},\"c\":{c:R},\"color\":\"{Colors[color]}\",\"flag\":{(flag ? "true" : "false")}{extra}}}");
            events.Add(Encoding.UTF8.GetBytes(json));
        }
        return events;
    }

    /// <summary>The entity ("id") of an event made by <see cref="Events"/>.</summary>
    internal static string Entity(byte[] payload)
    {
        using var json = JsonDocument.Parse(payload);
        return json.RootElement.GetProperty("id").GetString()!;
    }

    private static byte[]? Bad(int k) => (k % 8) switch
    {
        0 => Encoding.UTF8.GetBytes("not json at all"),
        1 => Encoding.UTF8.GetBytes("[1, 2, 3]"),
        2 => Encoding.UTF8.GetBytes("{\"a\": \"abc\", \"b\": 1}"),
        3 => Encoding.UTF8.GetBytes("{\"a\": \"NaN\"}"),
        4 => Encoding.UTF8.GetBytes("{\"a\": 1e300}"),
        5 => null,
        6 => Encoding.UTF8.GetBytes("{\"a\": 1, \"a\": 2}"),
        _ => Encoding.UTF8.GetBytes("{\"a\": 1, \"ts\": \"yesterday\"}"),
    };

    private static (double A, double B, double C, int Color, bool Flag) Normal(Random random, double shift = 0)
    {
        double a = Gaussian(random) + shift;
        double b = 2 * a + 0.3 * Gaussian(random);
        double c = Math.Exp(1 + 0.5 * a + 0.2 * Gaussian(random));
        int color = a < -0.7 ? 0 : a < 0 ? 1 : a < 0.7 ? 2 : 3;
        return (a, b, c, color, b > 0);
    }

    private static double Gaussian(Random random) =>
        Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble());

    /// <summary>Asserts that the database holds exactly the anomaly rows <paramref name="flagged"/> (partition, offset,
    /// ascending) and <c>scoring_stats</c> totalling <paramref name="scored"/>, flagged and <paramref name="deadLettered"/> events.</summary>
    internal static async Task AssertRowsAndTotalsAsync(string database, IReadOnlyList<(int, long)> flagged, long scored, long deadLettered,
        CancellationToken cancellationToken)
    {
        await using var connection = new NpgsqlConnection(database);
        await connection.OpenAsync(cancellationToken);
        var rows = new List<(int, long)>();
        await using (var command = new NpgsqlCommand("SELECT \"partition\", \"offset\" FROM anomalies", connection))
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken))
        {
            while (await reader.ReadAsync(cancellationToken))
                rows.Add((reader.GetInt32(0), reader.GetInt64(1)));
        }
        Assert.Equal(flagged, rows.Order());
        await using (var command = new NpgsqlCommand(
            "SELECT sum(events_scored)::bigint, sum(events_flagged)::bigint, sum(events_dead_lettered)::bigint FROM scoring_stats", connection))
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken))
        {
            Assert.True(await reader.ReadAsync(cancellationToken));
            Assert.Equal((scored, (long)flagged.Count, deadLettered), (reader.GetInt64(0), reader.GetInt64(1), reader.GetInt64(2)));
        }
    }

    internal static async Task<List<ProducedEvent>> ProduceAsync(TestInfrastructure infrastructure, string topic, IReadOnlyList<byte[]?> events,
        CancellationToken cancellationToken)
    {
        var config = infrastructure.ProducerConfig();
        config.LingerMs = 5;
        using var producer = new ProducerBuilder<Null, byte[]?>(config).Build();
        // Round-robin over the partitions: librdkafka's sticky partitioner would put a fast burst into one.
        int partitions;
        using (var admin = new DependentAdminClientBuilder(producer.Handle).Build())
            partitions = admin.GetMetadata(topic, TimeSpan.FromSeconds(10)).Topics.Single().Partitions.Count;
        var sends = events.Select((e, i) => producer.ProduceAsync(new TopicPartition(topic, i % partitions),
            new Message<Null, byte[]?> { Value = e }, cancellationToken)).ToArray();
        var results = await Task.WhenAll(sends);
        return [.. results.Select((r, i) => new ProducedEvent(r.Partition.Value, r.Offset.Value, events[i]))];
    }

    internal Dictionary<string, string?> Configuration(TestInfrastructure infrastructure, string topic, string deadLetterTopic, string database, string group,
        int httpPort = 0, string? model = null) => new()
        {
            ["Kafka:BootstrapServers"] = infrastructure.KafkaBootstrap,
            ["Kafka:GroupId"] = group,
            ["Kafka:Properties:api.version.request"] = "false",
            ["Kafka:Properties:broker.version.fallback"] = "0.9.0.1",
            ["Kafka:Properties:session.timeout.ms"] = "10000",
            ["Postgres:ConnectionString"] = database,
            ["Detectors:0:Name"] = "sensors",
            ["Detectors:0:Topic"] = topic,
            ["Detectors:0:Model"] = model ?? ModelPath,
            ["Detectors:0:DeadLetterTopic"] = deadLetterTopic,
            ["Detectors:0:EntityField"] = "id",
            ["Detectors:0:TimestampField"] = "ts",
            ["Scoring:BatchSize"] = "256",
            ["Scoring:BatchTimeoutMs"] = "20",
            ["Scoring:IntraOpThreads"] = "1",
            ["Http:Port"] = httpPort.ToString(CultureInfo.InvariantCulture),
        };

    /// <summary>How long until /readyz shows <paramref name="version"/> as the detector's model.</summary>
    internal static async Task<TimeSpan> WaitForVersionAsync(HttpClient http, string version, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        while ((await ReadyAsync(http, cancellationToken)).Version != version)
            await Task.Delay(10, cancellationToken);
        return clock.Elapsed;
    }

    internal sealed record Ready(bool IsReady, string? Version, string? ModelProblem);

    internal static async Task<Ready> ReadyAsync(HttpClient http, CancellationToken cancellationToken)
    {
        using var response = await http.GetAsync("/readyz", cancellationToken);
        using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync(cancellationToken));
        var detector = json.RootElement.GetProperty("detectors")[0];
        return new Ready(response.StatusCode == HttpStatusCode.OK && json.RootElement.GetProperty("ready").GetBoolean(),
            detector.GetProperty("model_version").GetString(), detector.GetProperty("model_problem").GetString());
    }

    /// <summary>Waits until every one of <paramref name="partitions"/> partitions has committed at least <paramref name="atLeast"/> events.</summary>
    internal static async Task WaitForProgressAsync(string database, string topic, int partitions, long atLeast, CancellationToken cancellationToken)
    {
        await using var connection = new NpgsqlConnection(database);
        await connection.OpenAsync(cancellationToken);
        while (true)
        {
            await using var command = new NpgsqlCommand("SELECT count(*) FROM consumer_offsets WHERE topic = $1 AND next_offset >= $2", connection);
            command.Parameters.AddWithValue(topic);
            command.Parameters.AddWithValue(atLeast);
            if ((long)(await command.ExecuteScalarAsync(cancellationToken))! >= partitions)
                return;
            await Task.Delay(20, cancellationToken);
        }
    }

    internal static WebApplication Host(Dictionary<string, string?> configuration) =>
        ServeHost.Build([], configure: c => c.AddInMemoryCollection(configuration));

    /// <summary>Runs serve with <paramref name="configuration"/> until the stored offsets cover <paramref name="events"/>, then stops it.</summary>
    internal static async Task ServeUntilStoredAsync(Dictionary<string, string?> configuration, string database, string topic,
        IEnumerable<ProducedEvent> events, CancellationToken cancellationToken)
    {
        await using var app = Host(configuration);
        await app.StartAsync(cancellationToken);
        await WaitForOffsetsAsync(database, topic, events, cancellationToken);
        await app.StopAsync(cancellationToken);
    }

    /// <summary>The scores the model gives each decodable event, computed directly (no service involved).</summary>
    internal Dictionary<(int Partition, long Offset), float> DirectScores(IReadOnlyList<ProducedEvent> events, out double threshold,
        out HashSet<(int Partition, long Offset)> undecodable, int maxPayloadBytes = EventDecoder.DefaultMaxPayloadBytes)
    {
        using var bundle = ModelBundle.Load(ModelPath);
        threshold = bundle.Calibration.Threshold;
        var decoder = new EventDecoder(bundle.Schema, "id", "ts", maxPayloadBytes);
        using var scorer = bundle.CreateScorer(events.Count);
        int f = bundle.Schema.Count, rows = 0;
        var keys = new List<(int, long)>();
        undecodable = [];
        foreach (var e in events)
        {
            var result = decoder.Decode(e.Payload ?? [], scorer.X.Slice(rows * f, f), scorer.Mask.Slice(rows * f, f));
            if (result.IsSuccess)
            {
                keys.Add((e.Partition, e.Offset));
                rows++;
            }
            else
            {
                undecodable.Add((e.Partition, e.Offset));
            }
        }
        scorer.Run(rows);
        var scores = scorer.Scores(rows);
        var byKey = new Dictionary<(int, long), float>();
        for (int i = 0; i < rows; i++)
            byKey[keys[i]] = scores[i];
        return byKey;
    }

    /// <summary>The scores the windowed model gives each decodable event through CSV-style scoring
    /// (<see cref="FeatureWindows"/>, no service involved): each (partition, entity)'s events in offset order.
    /// <paramref name="model"/>: another windowed model of the same features (default <see cref="WindowedModelPath"/>).</summary>
    internal Dictionary<(int Partition, long Offset), float> DirectWindowedScores(IReadOnlyList<ProducedEvent> events, out double threshold,
        out HashSet<(int Partition, long Offset)> undecodable, ModelBundle? model = null)
    {
        using var owned = model is null ? ModelBundle.Load(WindowedModelPath) : null;
        var bundle = model ?? owned!;
        threshold = bundle.Calibration.Threshold;
        var decoder = new EventDecoder(bundle.Schema, "id", "ts", EventDecoder.DefaultMaxPayloadBytes);
        int f = bundle.Schema.Count;
        var x = new List<float>();
        var mask = new List<float>();
        var entities = new List<string>();
        var keys = new List<(int, long)>();
        var row = new float[f];
        var present = new float[f];
        undecodable = [];
        foreach (var e in events.OrderBy(e => e.Partition).ThenBy(e => e.Offset))
        {
            var result = decoder.Decode(e.Payload ?? [], row, present);
            if (!result.IsSuccess)
            {
                undecodable.Add((e.Partition, e.Offset));
                continue;
            }
            x.AddRange(row);
            mask.AddRange(present);
            entities.Add($"{e.Partition}/{result.Entity.GetString(e.Payload)}");
            keys.Add((e.Partition, e.Offset));
        }
        var table = new FeatureTable(bundle.Schema, [.. x], [.. mask], extraColumns: new Dictionary<string, string[]> { ["id"] = [.. entities] });
        var scores = bundle.Score(table).Scores;
        return keys.Select((k, i) => (k, i)).ToDictionary(p => p.k, p => scores[p.i]);
    }

    /// <summary>Asserts that the anomaly rows are exactly the events of <paramref name="expected"/> above
    /// <paramref name="threshold"/>, each with its expected score (float noise only).</summary>
    internal static async Task AssertScoresAsync(string database, Dictionary<(int Partition, long Offset), float> expected, double threshold,
        CancellationToken cancellationToken)
    {
        await using var connection = new NpgsqlConnection(database);
        await connection.OpenAsync(cancellationToken);
        var rows = new Dictionary<(int, long), double>();
        await using (var command = new NpgsqlCommand("SELECT \"partition\", \"offset\", score FROM anomalies", connection))
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken))
        {
            while (await reader.ReadAsync(cancellationToken))
                rows.Add((reader.GetInt32(0), reader.GetInt64(1)), reader.GetDouble(2));
        }
        var flagged = expected.Where(e => e.Value > threshold).ToDictionary(e => e.Key, e => e.Value);
        Assert.Equal(flagged.Keys.Order(), rows.Keys.Order());
        int differ = flagged.Count(e => Math.Abs(e.Value - rows[e.Key]) > 1e-4 * Math.Max(1, Math.Abs(e.Value)));
        Assert.True(differ == 0, $"{differ} of {flagged.Count} stored scores differ from those of one uninterrupted run");
    }

    /// <summary>Waits until the stored offsets reach the end of every partition that received events.</summary>
    internal static async Task WaitForOffsetsAsync(string database, string topic, IEnumerable<ProducedEvent> events, CancellationToken cancellationToken)
    {
        var ends = events.GroupBy(e => e.Partition).ToDictionary(g => g.Key, g => g.Max(e => e.Offset) + 1);
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            await using (var connection = new NpgsqlConnection(database))
            {
                try
                {
                    await connection.OpenAsync(cancellationToken);
                    await using var command = new NpgsqlCommand("SELECT \"partition\", next_offset FROM consumer_offsets WHERE topic = $1", connection);
                    command.Parameters.AddWithValue(topic);
                    var stored = new Dictionary<int, long>();
                    await using var reader = await command.ExecuteReaderAsync(cancellationToken);
                    while (await reader.ReadAsync(cancellationToken))
                        stored[reader.GetInt32(0)] = reader.GetInt64(1);
                    if (ends.All(e => stored.TryGetValue(e.Key, out var next) && next >= e.Value))
                        return;
                }
                catch (PostgresException e) when (e.SqlState == "42P01")
                {
                    // Not migrated yet.
                }
                catch (NpgsqlException e) when (e.IsTransient || e is PostgresException { SqlState: "57P01" or "55000" })
                {
                    // A database outage made on purpose by the test.
                    NpgsqlConnection.ClearPool(connection);
                }
            }
            await Task.Delay(100, cancellationToken);
        }
    }

    /// <summary>Rows, dead letters and statistics are exactly what the events imply.</summary>
    internal async Task AssertStoredAsync(TestInfrastructure infrastructure, string database, string topic, string deadLetterTopic, List<ProducedEvent> events, CancellationToken cancellationToken)
    {
        var expected = DirectScores(events, out double threshold, out var undecodable);
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
        var letters = ReadDeadLetters(infrastructure, deadLetterTopic, undecodable.Count, cancellationToken);
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

    internal static List<DeadLetter> ReadDeadLetters(TestInfrastructure infrastructure, string topic, int expected, CancellationToken cancellationToken)
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

    internal static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
