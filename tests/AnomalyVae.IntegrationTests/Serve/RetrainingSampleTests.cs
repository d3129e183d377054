using System.Globalization;
using System.Text.Json;
using AnomalyVae.Inference;
using AnomalyVae.IntegrationTests.Infrastructure;
using AnomalyVae.Model;
using AnomalyVae.Retraining;
using AnomalyVae.Storage;
using AnomalyVae.Streaming;
using AnomalyVae.Training.Engine;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;

namespace AnomalyVae.IntegrationTests.Serve;

/// <summary>
/// What serve keeps for retraining and drift, against the real broker and database: the training-sample reservoir
/// (normal events only), the recent-events ring (flagged and not, held out from the reservoir), the counters behind
/// both, the calibration score bins, and the drift verdict they give for an unshifted and a shifted stream.
/// </summary>
[Collection(InfrastructureCollection.Name)]
public sealed class RetrainingSampleTests(TestInfrastructure infrastructure, ServeFixture fixture) : IClassFixture<ServeFixture>
{
    private const int SampleSize = 300;
    private const double SampleRate = 0.2;
    private const int RecentSize = 1000;
    private const double RecentRate = 0.3;

    [Fact]
    public async Task Serve_fills_the_reservoir_with_normal_events_and_the_ring_with_held_out_ones_and_bins_every_score()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        var topic = await infrastructure.CreateTopicAsync("sample", partitions: 3, cts.Token);
        var deadLetters = await infrastructure.CreateTopicAsync("sample-dlq", partitions: 1, cts.Token);
        var database = await infrastructure.CreateDatabaseAsync("sample", cts.Token);
        try
        {
            var events = await ServeFixture.ProduceAsync(infrastructure, topic, ServeFixture.Events(6000, seed: 21), cts.Token);
            var configuration = fixture.Configuration(infrastructure, topic, deadLetters, database, $"g-{Guid.NewGuid():N}");
            configuration["Retraining:SampleSize"] = SampleSize.ToString(CultureInfo.InvariantCulture);
            configuration["Retraining:SampleRate"] = SampleRate.ToString(CultureInfo.InvariantCulture);
            configuration["Retraining:RecentSize"] = RecentSize.ToString(CultureInfo.InvariantCulture);
            configuration["Retraining:RecentRate"] = RecentRate.ToString(CultureInfo.InvariantCulture);
            await ServeFixture.ServeUntilStoredAsync(configuration, database, topic, events, cts.Token);

            var expected = fixture.DirectScores(events, out double threshold, out _);
            var payloads = events.ToDictionary(e => (e.Partition, e.Offset), e => e.Payload);
            int normal = expected.Count(e => e.Value <= threshold);
            await using var dataSource = NpgsqlDataSource.Create(database);
            var (trainingAdmitted, recentAdmitted) = await CountersAsync(dataSource, cts.Token);
            Console.WriteLine($"{expected.Count} scored, {normal} normal; admitted {trainingAdmitted} to the reservoir, {recentAdmitted} to the ring");
            // Admissions are Bernoulli draws: within 5 standard deviations of their expectation.
            AssertNear(trainingAdmitted, normal, SampleRate);
            AssertNear(recentAdmitted, expected.Count, RecentRate);

            var training = await RowsAsync(dataSource, "training_sample", "false", cts.Token);
            var recent = await RowsAsync(dataSource, "recent_events", "flagged", cts.Token);
            Assert.Equal(Math.Min(SampleSize, trainingAdmitted), training.Count);
            Assert.Equal(Math.Min(RecentSize, recentAdmitted), recent.Count);
            Assert.Equal(training.Count, training.Select(r => r.Key).Distinct().Count());
            Assert.Equal(recent.Count, recent.Select(r => r.Key).Distinct().Count());
            Assert.Empty(training.Select(r => r.Key).Intersect(recent.Select(r => r.Key)));
            foreach (var row in training.Concat(recent))
            {
                Assert.True(expected.TryGetValue(row.Key, out float score), $"{row.Key} was not a scored event");
                Assert.Equal(score, row.Score, 1e-3);
                Assert.Equal(score > threshold, row.Flagged);
                // The event as jsonb, or (where jsonb refuses it, e.g. a \u0000 inside) its bytes in base64.
                if (row.Event.RootElement.TryGetProperty("payload_base64", out var base64))
                {
                    Assert.Equal(payloads[row.Key], base64.GetBytesFromBase64());
                    continue;
                }
                using var payload = JsonDocument.Parse(payloads[row.Key]!);
                Assert.Equal(payload.RootElement.GetProperty("ts").GetString(), row.Event.RootElement.GetProperty("ts").GetString());
                Assert.Equal(payload.RootElement.GetProperty("a").GetDouble(), row.Event.RootElement.GetProperty("a").GetDouble());
            }
            Assert.All(training, r => Assert.InRange(r.Slot, 0, SampleSize - 1));
            Assert.All(recent, r => Assert.InRange(r.Slot, 0, RecentSize - 1));
            Assert.All(training, r => Assert.True(r.Score <= threshold));
            Assert.Contains(recent, r => r.Flagged);
            Assert.Contains(recent, r => !r.Flagged);

            // Every scored event is in exactly one bin, and the bins are those of its score.
            using var bundle = ModelBundle.Load(fixture.ModelPath);
            var edges = ScoreDrift.Edges(bundle.Calibration);
            var direct = new long[ScoreDrift.BinCount];
            foreach (var score in expected.Values)
                direct[ScoreDrift.BinOf(edges, score)]++;
            var stored = new long[ScoreDrift.BinCount];
            await using (var command = dataSource.CreateCommand("SELECT events_scored, score_bins FROM scoring_stats"))
            await using (var reader = await command.ExecuteReaderAsync(cts.Token))
            {
                while (await reader.ReadAsync(cts.Token))
                {
                    var bins = reader.GetFieldValue<long[]>(1);
                    Assert.Equal(reader.GetInt64(0), bins.Sum());
                    for (int k = 0; k < bins.Length; k++)
                        stored[k] += bins[k];
                }
            }
            Assert.Equal(direct, stored);
        }
        finally
        {
            NpgsqlConnection.ClearAllPools();
            await infrastructure.DropDatabaseAsync(database, CancellationToken.None);
        }
    }

    [Fact]
    public async Task A_shifted_stream_is_reported_as_drift_and_an_unshifted_one_as_ok()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        var topic = await infrastructure.CreateTopicAsync("drift-ok", partitions: 2, cts.Token);
        var shiftedTopic = await infrastructure.CreateTopicAsync("drift-shifted", partitions: 2, cts.Token);
        var deadLetters = await infrastructure.CreateTopicAsync("drift-dlq", partitions: 1, cts.Token);
        var database = await infrastructure.CreateDatabaseAsync("drift", cts.Token);
        try
        {
            var events = await ServeFixture.ProduceAsync(infrastructure, topic, ServeFixture.Events(3000, seed: 31), cts.Token);
            var shifted = await ServeFixture.ProduceAsync(infrastructure, shiftedTopic, ServeFixture.Events(3000, seed: 32, shift: 1.5), cts.Token);
            int port = ServeFixture.FreePort();
            var configuration = fixture.Configuration(infrastructure, topic, deadLetters, database, $"g-{Guid.NewGuid():N}", port);
            foreach (var (key, value) in configuration.Where(c => c.Key.StartsWith("Detectors:0:", StringComparison.Ordinal)).ToList())
                configuration["Detectors:1:" + key["Detectors:0:".Length..]] = value;
            configuration["Detectors:1:Name"] = "shifted";
            configuration["Detectors:1:Topic"] = shiftedTopic;
            await using var app = ServeFixture.Host(configuration);
            await app.StartAsync(cts.Token);
            await ServeFixture.WaitForOffsetsAsync(database, topic, events, cts.Token);
            await ServeFixture.WaitForOffsetsAsync(database, shiftedTopic, shifted, cts.Token);

            await using var dataSource = NpgsqlDataSource.Create(database);
            var queries = new AnomalyQueries(dataSource, new RetrainingOptions());
            var detectors = (await queries.DetectorsAsync(cts.Token)).ToDictionary(d => d.Detector);
            var ok = detectors["sensors"];
            var drifting = detectors["shifted"];
            Console.WriteLine($"PSI unshifted {ok.DriftPsi} over {ok.DriftEvents} events, shifted {drifting.DriftPsi} over {drifting.DriftEvents}");
            Assert.Equal(ScoreDrift.Ok, ok.DriftStatus);
            Assert.Equal(ScoreDrift.Drift, drifting.DriftStatus);
            Assert.True(drifting.DriftPsi > 0.25, $"PSI {drifting.DriftPsi}");
            long scored = fixture.DirectScores(shifted, out _, out _).Count;
            Assert.Equal(scored, drifting.DriftEvents);
            Assert.Equal(drifting.DriftPsi, (await queries.DriftAsync("shifted", cts.Token)).Psi);
            // Too few events for a verdict: unknown, with the index still reported.
            var strict = await new AnomalyQueries(dataSource, new RetrainingOptions { DriftMinEvents = 100_000 }).DriftAsync("shifted", cts.Token);
            Assert.Equal((ScoreDrift.Unknown, drifting.DriftPsi), (strict.Status, strict.Psi));
            Assert.Equal(new DetectorDrift(ScoreDrift.Unknown, null, 0, null), await queries.DriftAsync("nobody", cts.Token));

            // serve's gauge reports the same index.
            await app.Services.GetRequiredService<DriftMonitor>().RefreshAsync(cts.Token);
            using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}") };
            var metrics = await http.GetStringAsync("/metrics", cts.Token);
            var line = metrics.Split('\n').Single(l => l.StartsWith("anomalyvae_drift_psi{detector=\"shifted\"} ", StringComparison.Ordinal));
            Assert.Equal(drifting.DriftPsi!.Value, double.Parse(line.Split(' ')[1], CultureInfo.InvariantCulture), 9);
            await app.StopAsync(cts.Token);
        }
        finally
        {
            NpgsqlConnection.ClearAllPools();
            await infrastructure.DropDatabaseAsync(database, CancellationToken.None);
        }
    }

    [Fact]
    public async Task Drift_on_a_shifted_stream_leads_to_a_promoted_challenger_trained_on_what_serve_sampled()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        var topic = await infrastructure.CreateTopicAsync("drift-retrain", partitions: 2, cts.Token);
        var deadLetters = await infrastructure.CreateTopicAsync("drift-retrain-dlq", partitions: 1, cts.Token);
        var database = await infrastructure.CreateDatabaseAsync("driftretrain", cts.Token);
        try
        {
            await using var dataSource = NpgsqlDataSource.Create(database);
            await new SchemaMigrator(dataSource).MigrateAsync(cts.Token);
            var active = await new ModelRegistry(dataSource).RegisterFileAsync("sensors", fixture.ModelPath, activate: true, cts.Token);
            var events = await ServeFixture.ProduceAsync(infrastructure, topic, ServeFixture.Events(10_000, seed: 41, shift: 1.5), cts.Token);
            var configuration = fixture.Configuration(infrastructure, topic, deadLetters, database, $"g-{Guid.NewGuid():N}");
            configuration["Retraining:SampleSize"] = "4000";
            configuration["Retraining:SampleRate"] = "0.7";
            configuration["Retraining:RecentSize"] = "2000";
            configuration["Retraining:RecentRate"] = "0.3";
            await ServeFixture.ServeUntilStoredAsync(configuration, database, topic, events, cts.Token);

            var drift = await new AnomalyQueries(dataSource, new RetrainingOptions()).DriftAsync("sensors", cts.Token);
            Assert.Equal(ScoreDrift.Drift, drift.Status);
            var training = new AnomalyVae.Training.Engine.VaeTrainingOptions { Hidden = [16, 8], Latent = 3, Epochs = 12, Threads = 1, Seed = 3, ValidationFraction = 0.25 };
            var outcome = await new Retrainer(dataSource, new RetrainingGateOptions(), training).RunAsync("sensors", Retrainer.Drift, cts.Token);
            Console.WriteLine($"drift PSI {drift.Psi:F3} over {drift.Events} events; retrain {outcome.Decision} on {outcome.TrainingRows} sampled rows: "
                + $"flag rate on the held-out recent slice active {outcome.Active?.FlagRate:P2}, challenger {outcome.Challenger?.FlagRate:P2}; "
                + string.Join("; ", outcome.Reasons) + $"; truncation {outcome.Truncation}");
            Assert.Equal(active.Version, outcome.ActiveVersion);
            Assert.Equal(Retrainer.Promoted, outcome.Decision);
            // 2 % of the stream are injected anomalies, so ≈ 3 % is the floor at the 1 % target; the sample holds only
            // events the old model scored as normal, so the shifted distribution's upper tail is under-represented.
            Assert.True(outcome.Challenger!.FlagRate < outcome.Active!.FlagRate / 2);
            Assert.InRange(outcome.Challenger.FlagRate, 0.0, 0.08);
        }
        finally
        {
            NpgsqlConnection.ClearAllPools();
            await infrastructure.DropDatabaseAsync(database, CancellationToken.None);
        }
    }

    private static void AssertNear(long admitted, int candidates, double rate)
    {
        double mean = candidates * rate, sd = Math.Sqrt(candidates * rate * (1 - rate));
        Assert.InRange(admitted, mean - (5 * sd), mean + (5 * sd));
    }

    private static async Task<(long Training, long Recent)> CountersAsync(NpgsqlDataSource dataSource, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand("SELECT training_admitted, recent_admitted FROM sample_counters WHERE detector = 'sensors'");
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        Assert.True(await reader.ReadAsync(cancellationToken));
        return (reader.GetInt64(0), reader.GetInt64(1));
    }

    private sealed record SampleRow((int Partition, long Offset) Key, double Score, bool Flagged, JsonDocument Event, int Slot);

    private static async Task<List<SampleRow>> RowsAsync(NpgsqlDataSource dataSource, string table, string flagged, CancellationToken cancellationToken)
    {
        var rows = new List<SampleRow>();
        await using var command = dataSource.CreateCommand(
            $"SELECT \"partition\", \"offset\", score, {flagged}, event::text, slot FROM {table} WHERE detector = 'sensors'");
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            rows.Add(new SampleRow((reader.GetInt32(0), reader.GetInt64(1)), reader.GetDouble(2), reader.GetBoolean(3),
                JsonDocument.Parse(reader.GetString(4)), reader.GetInt32(5)));
        }
        return rows;
    }
}
