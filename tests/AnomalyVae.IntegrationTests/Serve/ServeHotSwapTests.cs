using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text.Json;
using AnomalyVae.IntegrationTests.Infrastructure;
using AnomalyVae.Model;
using AnomalyVae.Storage;
using AnomalyVae.Streaming;
using AnomalyVae.Training;
using AnomalyVae.Training.Engine;
using Npgsql;

namespace AnomalyVae.IntegrationTests.Serve;

/// <summary>
/// A detector configured by registry name follows the registry's active version while events stream: activation and
/// rollback swap versions between batches, every event is scored exactly once and labelled with the version that
/// scored it; activations without a notification still take effect; a version that does not load leaves the stream
/// on the old one; a name without an active model stops start-up.
/// </summary>
[Collection(InfrastructureCollection.Name)]
public sealed class ServeHotSwapTests(TestInfrastructure infrastructure, ServeFixture fixture) : IClassFixture<ServeFixture>
{
    private static readonly TimeSpan Patience = TimeSpan.FromMinutes(3);

    [Fact]
    public async Task Activation_and_rollback_while_streaming_switch_versions_once_per_partition_scoring_every_event_exactly_once()
    {
        using var cts = new CancellationTokenSource(Patience);
        var clock = Stopwatch.StartNew();
        await using var stream = await ServeStream.CreateAsync(infrastructure, "hotswap", partitions: 4, cts.Token);
        var (topic, deadLetters, database) = stream;
        // Two versions of one model: same data and features, different seeds.
        var v2Path = SecondModel();
        await using var dataSource = NpgsqlDataSource.Create(database);
        await new SchemaMigrator(dataSource).MigrateAsync(cts.Token);
        var registry = new ModelRegistry(dataSource);
        var v1 = (await registry.RegisterFileAsync("hotswap", fixture.ModelPath, activate: true, cts.Token)).Version;
        var v2 = (await registry.RegisterFileAsync("hotswap", v2Path, activate: false, cts.Token)).Version;
        Assert.NotEqual(v1, v2);

        int port = ServeFixture.FreePort();
        var configuration = Configuration(topic, deadLetters, database, port, "hotswap");
        var events = await ServeFixture.ProduceAsync(infrastructure, topic, Decodable(50_000, seed: 41), cts.Token);
        await using var app = ServeFixture.Host(configuration);
        await app.StartAsync(cts.Token);
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}") };
        Assert.Equal(v1, (await ServeFixture.ReadyAsync(http, cts.Token)).Version);

        // Mid-stream: every partition has progressed under v1, far from the end of the backlog.
        await ServeFixture.WaitForProgressAsync(database, topic, partitions: 4, atLeast: 1_000, cts.Token);
        var swap = await ActivateAndWaitAsync(registry, http, "hotswap", v2, cts.Token);
        events.AddRange(await ServeFixture.ProduceAsync(infrastructure, topic, Decodable(50_000, seed: 42), cts.Token));
        await ServeFixture.WaitForOffsetsAsync(database, topic, events, cts.Token);
        var rollbackFrom = events.GroupBy(e => e.Partition).ToDictionary(g => g.Key, g => g.Max(e => e.Offset) + 1);

        // Rollback = activating the older version again.
        var rollback = await ActivateAndWaitAsync(registry, http, "hotswap", v1, cts.Token);
        events.AddRange(await ServeFixture.ProduceAsync(infrastructure, topic, Decodable(10_000, seed: 43), cts.Token));
        await ServeFixture.WaitForOffsetsAsync(database, topic, events, cts.Token);
        await app.StopAsync(cts.Token);

        var rows = await ReadRowsAsync(database, topic, cts.Token);
        Assert.Equal(events.Count, rows.Count);
        foreach (var partition in events.GroupBy(e => e.Partition))
        {
            var scored = rows.Where(r => r.Partition == partition.Key).OrderBy(r => r.Offset).ToList();
            // Every offset exactly once: no gap, no duplicate.
            Assert.Equal(Enumerable.Range(0, partition.Count()).Select(i => (long)i), scored.Select(r => r.Offset));
            var beforeRollback = scored.Where(r => r.Offset < rollbackFrom[partition.Key]).Select(r => r.Version).ToList();
            int switchAt = beforeRollback.IndexOf(v2);
            Assert.True(switchAt > 0, $"partition {partition.Key}: no v1 rows before v2 ({switchAt})");
            Assert.All(beforeRollback.Take(switchAt), v => Assert.Equal(v1, v));
            Assert.All(beforeRollback.Skip(switchAt), v => Assert.Equal(v2, v));
            Assert.All(scored.Where(r => r.Offset >= rollbackFrom[partition.Key]), r => Assert.Equal(v1, r.Version));
            Console.WriteLine($"partition {partition.Key}: v1 0..{switchAt - 1}, v2 {switchAt}..{beforeRollback.Count - 1}, v1 again {beforeRollback.Count}..{scored.Count - 1}");
        }

        // The statistics count every event under the version that scored it.
        var stats = await ScoredByVersionAsync(database, cts.Token);
        Assert.Equal(rows.GroupBy(r => r.Version).ToDictionary(g => g.Key, g => (long)g.Count()), stats);
        Console.WriteLine($"hot swap: {events.Count} events, v2 active in /readyz {swap.TotalMilliseconds:F0} ms after activation, "
            + $"rollback {rollback.TotalMilliseconds:F0} ms; test {clock.Elapsed.TotalSeconds:F1} s");
    }

    [Fact]
    public async Task Activations_without_a_notification_or_while_the_listening_connection_is_down_still_take_effect()
    {
        using var cts = new CancellationTokenSource(Patience);
        await using var stream = await ServeStream.CreateAsync(infrastructure, "hotswap-poll", partitions: 2, cts.Token);
        var (topic, deadLetters, database) = stream;
        await using var dataSource = NpgsqlDataSource.Create(database);
        await new SchemaMigrator(dataSource).MigrateAsync(cts.Token);
        var registry = new ModelRegistry(dataSource);
        var v1 = (await registry.RegisterFileAsync("polled", fixture.ModelPath, activate: true, cts.Token)).Version;
        var v2 = (await registry.RegisterFileAsync("polled", SecondModel(), activate: false, cts.Token)).Version;
        int port = ServeFixture.FreePort();
        await using var app = ServeFixture.Host(Configuration(topic, deadLetters, database, port, "polled"));
        await app.StartAsync(cts.Token);
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}") };
        Assert.Equal(v1, (await ServeFixture.ReadyAsync(http, cts.Token)).Version);

        // An activation written without pg_notify: only the periodic poll can find it. Retire, then activate, in one
        // transaction: one active version per detector is a unique index, checked row by row.
        await using (var silent = dataSource.CreateBatch())
        {
            silent.BatchCommands.Add(new NpgsqlBatchCommand("UPDATE models SET status = 'retired' WHERE detector = 'polled' AND status = 'active' AND version <> $1")
            {
                Parameters = { new NpgsqlParameter { Value = v2 } },
            });
            silent.BatchCommands.Add(new NpgsqlBatchCommand("UPDATE models SET status = 'active', activated_at = now() WHERE detector = 'polled' AND version = $1")
            {
                Parameters = { new NpgsqlParameter { Value = v2 } },
            });
            await silent.ExecuteNonQueryAsync(cts.Token);
        }
        var polled = await ServeFixture.WaitForVersionAsync(http, v2, cts.Token);
        var events = await ServeFixture.ProduceAsync(infrastructure, topic, Decodable(1_000, seed: 61), cts.Token);
        await ServeFixture.WaitForOffsetsAsync(database, topic, events, cts.Token);
        int firstPhase = events.Count;

        // The listening connection dies, and the rollback's notification goes out while nobody listens: the
        // reconnect's catch-up (or the poll) finds it.
        await using (var kill = dataSource.CreateCommand(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%'"))
            Assert.Equal(1L, await kill.ExecuteScalarAsync(cts.Token));
        await registry.ActivateAsync("polled", v1, cts.Token);
        var reconnected = await ServeFixture.WaitForVersionAsync(http, v1, cts.Token);
        events.AddRange(await ServeFixture.ProduceAsync(infrastructure, topic, Decodable(1_000, seed: 62), cts.Token));
        await ServeFixture.WaitForOffsetsAsync(database, topic, events, cts.Token);
        await app.StopAsync(cts.Token);
        Console.WriteLine($"silent activation taken after {polled.TotalSeconds:F1} s (poll every {ModelRegistryFollower.PollInterval.TotalSeconds} s), "
            + $"activation while disconnected after {reconnected.TotalSeconds:F1} s");

        var rows = (await ReadRowsAsync(database, topic, cts.Token)).ToDictionary(r => (r.Partition, r.Offset), r => r.Version);
        Assert.Equal(events.Count, rows.Count);
        Assert.All(events.Take(firstPhase), e => Assert.Equal(v2, rows[(e.Partition, e.Offset)]));
        Assert.All(events.Skip(firstPhase), e => Assert.Equal(v1, rows[(e.Partition, e.Offset)]));
    }

    [Fact]
    public async Task An_activated_version_that_does_not_load_is_reported_and_the_stream_goes_on_with_the_old_one()
    {
        using var cts = new CancellationTokenSource(Patience);
        await using var stream = await ServeStream.CreateAsync(infrastructure, "hotswap-bad", partitions: 2, cts.Token);
        var (topic, deadLetters, database) = stream;
        await using var dataSource = NpgsqlDataSource.Create(database);
        await new SchemaMigrator(dataSource).MigrateAsync(cts.Token);
        var registry = new ModelRegistry(dataSource);
        var v1 = (await registry.RegisterFileAsync("bad-follow", fixture.ModelPath, activate: true, cts.Token)).Version;
        // A stored model whose bytes got corrupted (the registry itself validates what it registers).
        await using (var corrupt = dataSource.CreateCommand(
            "INSERT INTO models (detector, version, created_at, onnx, metadata) VALUES ('bad-follow', 'corrupt-1', now(), '\\x0102030405'::bytea, '{}')"))
            await corrupt.ExecuteNonQueryAsync(cts.Token);

        int port = ServeFixture.FreePort();
        var events = await ServeFixture.ProduceAsync(infrastructure, topic, Decodable(2_000, seed: 51), cts.Token);
        await using var app = ServeFixture.Host(Configuration(topic, deadLetters, database, port, "bad-follow"));
        await app.StartAsync(cts.Token);
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}") };
        await ServeFixture.WaitForOffsetsAsync(database, topic, events, cts.Token);

        await registry.ActivateAsync("bad-follow", "corrupt-1", cts.Token);
        ServeFixture.Ready ready;
        do
        {
            await Task.Delay(50, cts.Token);
            ready = await ServeFixture.ReadyAsync(http, cts.Token);
        }
        while (ready.ModelProblem is null);
        Assert.Contains("corrupt-1", ready.ModelProblem, StringComparison.Ordinal);
        Assert.Equal(v1, ready.Version);
        Assert.True(ready.IsReady, "a detector still scoring with its previous version stays ready");

        events.AddRange(await ServeFixture.ProduceAsync(infrastructure, topic, Decodable(2_000, seed: 52), cts.Token));
        await ServeFixture.WaitForOffsetsAsync(database, topic, events, cts.Token);
        var metrics = await http.GetStringAsync("/metrics", cts.Token);
        Assert.Contains("anomalyvae_model_load_failures_total{detector=\"sensors\"} 1\n", metrics, StringComparison.Ordinal);
        Assert.Contains($"anomalyvae_model_info{{detector=\"sensors\",version=\"{v1}\"}} 1\n", metrics, StringComparison.Ordinal);
        Assert.Matches("anomalyvae_build_info\\{librdkafka=\"2\\.16\\.[0-9]+\",onnxruntime=\"1\\.32\\.[0-9]+\",version=\"[^\"]+\"\\} 1\n", metrics);
        await app.StopAsync(cts.Token);

        var rows = await ReadRowsAsync(database, topic, cts.Token);
        Assert.Equal(events.Count, rows.Count);
        Assert.All(rows, r => Assert.Equal(v1, r.Version));
    }

    [Fact]
    public async Task A_registry_name_without_an_active_model_stops_start_up_saying_how_to_fix_it()
    {
        using var cts = new CancellationTokenSource(Patience);
        var database = await infrastructure.CreateDatabaseAsync("hotswap_none", cts.Token);
        try
        {
            // The migrations run before the registry is read: this database starts empty.
            var configuration = Configuration("t", "t.dlq", database, 0, "nothing-active");
            await using (var app = ServeFixture.Host(configuration))
            {
                var error = await Assert.ThrowsAsync<ServiceConfigurationException>(() => app.StartAsync(cts.Token));
                Assert.Contains("Detector 'sensors'", error.Message, StringComparison.Ordinal);
                Assert.Contains("no active model for 'nothing-active'", error.Message, StringComparison.Ordinal);
                Assert.Contains("anomalyvae models register --detector nothing-active --file MODEL.onnx --activate", error.Message, StringComparison.Ordinal);
            }

            // Registered but not active: the fix names the version to activate.
            await using var dataSource = NpgsqlDataSource.Create(database);
            var candidate = await new ModelRegistry(dataSource).RegisterFileAsync("nothing-active", fixture.ModelPath, activate: false, cts.Token);
            await using (var app = ServeFixture.Host(configuration))
            {
                var error = await Assert.ThrowsAsync<ServiceConfigurationException>(() => app.StartAsync(cts.Token));
                Assert.Contains($"anomalyvae models activate --detector nothing-active --version {candidate.Version}", error.Message, StringComparison.Ordinal);
            }
        }
        finally
        {
            await infrastructure.DropDatabaseAsync(database, CancellationToken.None);
        }
    }

    /// <summary>The serve configuration with the model given by registry name and a threshold every event exceeds, so
    /// every event gets an anomaly row carrying the version that scored it.</summary>
    private Dictionary<string, string?> Configuration(string topic, string deadLetters, string database, int port, string registryName)
    {
        var configuration = fixture.Configuration(infrastructure, topic, deadLetters, database, $"g-{Guid.NewGuid():N}", port, model: registryName);
        configuration["Detectors:0:Threshold"] = "-1e9";
        configuration["Scoring:BatchSize"] = "1024";
        return configuration;
    }

    /// <summary>Events that all decode (the fixture's generator without its malformed ones).</summary>
    private static List<byte[]?> Decodable(int count, int seed) =>
        [.. ServeFixture.Events(count + count / 39 + 1, seed).Where((_, i) => i % 40 != 39).Take(count)];

    /// <summary>The fixture's model trained with another seed (once per test class): a second version.</summary>
    private string SecondModel()
    {
        var path = Path.Combine(fixture.Directory, "sensors-seed8.onnx");
        if (File.Exists(path))
            return path;
        var spec = FeatureSpec.Parse(
            """{"features":[{"name":"a","kind":"numeric"},{"name":"b","kind":"numeric"},{"name":"c","kind":"numeric","log":true},{"name":"color","kind":"categorical"},{"name":"flag","kind":"binary"}],"ignore":["id"]}""");
        var options = new VaeTrainingOptions { Hidden = [16, 8], Latent = 3, Epochs = 5, Threads = 1, Seed = 8, ValidationFraction = 0.25 };
        Trainer.Train(Path.Combine(fixture.Directory, "train.csv"), spec, options).Save(path);
        return path;
    }

    /// <summary>Activates <paramref name="version"/> and returns how long until /readyz shows it as the detector's model.</summary>
    private static async Task<TimeSpan> ActivateAndWaitAsync(ModelRegistry registry, HttpClient http, string name, string version, CancellationToken cancellationToken)
    {
        await registry.ActivateAsync(name, version, cancellationToken);
        return await ServeFixture.WaitForVersionAsync(http, version, cancellationToken);
    }

    private static async Task<List<(int Partition, long Offset, string Version)>> ReadRowsAsync(string database, string topic, CancellationToken cancellationToken)
    {
        await using var connection = new NpgsqlConnection(database);
        await connection.OpenAsync(cancellationToken);
        await using var command = new NpgsqlCommand("SELECT \"partition\", \"offset\", model_version FROM anomalies WHERE detector = 'sensors' AND topic = $1", connection);
        command.Parameters.AddWithValue(topic);
        var rows = new List<(int, long, string)>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
            rows.Add((reader.GetInt32(0), reader.GetInt64(1), reader.GetString(2)));
        return rows;
    }

    private static async Task<Dictionary<string, long>> ScoredByVersionAsync(string database, CancellationToken cancellationToken)
    {
        await using var connection = new NpgsqlConnection(database);
        await connection.OpenAsync(cancellationToken);
        await using var command = new NpgsqlCommand(
            "SELECT model_version, sum(events_scored)::bigint FROM scoring_stats WHERE detector = 'sensors' GROUP BY model_version", connection);
        var result = new Dictionary<string, long>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
            result[reader.GetString(0)] = reader.GetInt64(1);
        return result;
    }
}
