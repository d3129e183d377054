using System.Diagnostics;
using System.Text.Json;
using AnomalyVae.Inference;
using AnomalyVae.IntegrationTests.Infrastructure;
using AnomalyVae.Model;
using AnomalyVae.Retraining;
using AnomalyVae.Storage;
using AnomalyVae.Streaming;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;

namespace AnomalyVae.IntegrationTests.Serve;

/// <summary>
/// The lifecycle through a running serve, nothing called directly: a detector follows the registry, serve samples
/// and bins what it scores, its in-process schedule retrains on drift (Retraining:OnDrift) or on an interval
/// (Retraining:Interval), the gates promote, and serve swaps to the new version by itself.
/// </summary>
[Collection(InfrastructureCollection.Name)]
public sealed class InProcessRetrainingTests(TestInfrastructure infrastructure, ServeFixture fixture) : IClassFixture<ServeFixture>
{
    private const double Shift = 1.5;

    [Fact]
    public async Task A_shifted_stream_drifts_serve_retrains_by_itself_swaps_to_the_challenger_and_flags_near_the_target_again()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        var topic = await infrastructure.CreateTopicAsync("ondrift", partitions: 2, cts.Token);
        var deadLetters = await infrastructure.CreateTopicAsync("ondrift-dlq", partitions: 1, cts.Token);
        var database = await infrastructure.CreateDatabaseAsync("ondrift", cts.Token);
        try
        {
            await using var dataSource = NpgsqlDataSource.Create(database);
            await new SchemaMigrator(dataSource).MigrateAsync(cts.Token);
            var v1 = await new ModelRegistry(dataSource).RegisterFileAsync("sensors", fixture.ModelPath, activate: true, cts.Token);
            var configuration = fixture.Configuration(infrastructure, topic, deadLetters, database, $"g-{Guid.NewGuid():N}", model: "sensors");
            // Small and quick, with the proportions of a real set-up: the verdict needs more shifted events than the
            // ring holds (so the ring is the shifted stream when the retrain reads it), and the reservoir turns over.
            var retraining = new Dictionary<string, string>
            {
                ["SampleSize"] = "4000",
                ["SampleRate"] = "0.6",
                ["RecentSize"] = "1300",
                ["RecentRate"] = "0.4",
                ["DriftWindow"] = "00:00:08",
                ["DriftMinEvents"] = "4000",
                ["DriftCooldown"] = "01:00:00",
                ["OnDrift"] = "true",
                ["CheckInterval"] = "00:00:01",
            };
            foreach (var (key, value) in retraining)
                configuration["Retraining:" + key] = value;
            configuration["Scoring:StatsWindowSeconds"] = "1";
            var options = new RetrainingOptions { DriftWindow = TimeSpan.FromSeconds(8), DriftMinEvents = 4000 };
            var queries = new AnomalyQueries(dataSource, options);

            await using var app = ServeFixture.Host(configuration);
            await app.StartAsync(cts.Token);
            var detector = app.Services.GetRequiredService<DetectorSet>().Detectors[0];

            // Before: the stream the model was trained on.
            var unshifted = await ServeFixture.ProduceAsync(infrastructure, topic, ServeFixture.Events(4500, seed: 51), cts.Token);
            await ServeFixture.WaitForOffsetsAsync(database, topic, unshifted, cts.Token);
            var before = await queries.DriftAsync("sensors", cts.Token);
            Console.WriteLine($"before the shift: PSI {before.Psi:F3} over {before.Events} events ({before.Status})");
            Assert.Equal(ScoreDrift.Ok, before.Status);
            // Let the unshifted windows leave the drift window, so the verdict is about the shifted stream alone.
            await Task.Delay(TimeSpan.FromSeconds(9), cts.Token);

            // The shift: a steady stream until serve has promoted a challenger and swapped to it.
            var shiftedAt = Stopwatch.StartNew();
            var shiftStart = await NowAsync(dataSource, cts.Token);
            var streamed = new List<ProducedEvent>();
            DetectorDrift? during = null;
            RetrainRun? run = null;
            for (int chunk = 0; run is null; chunk++)
            {
                Assert.True(chunk < 400, "no drift-triggered retraining run finished");
                streamed.AddRange(await ServeFixture.ProduceAsync(infrastructure, topic, ServeFixture.Events(500, seed: 1000 + chunk, shift: Shift), cts.Token));
                await Task.Delay(200, cts.Token);
                var drift = await queries.DriftAsync("sensors", cts.Token);
                if (drift.Status == ScoreDrift.Drift && during is null)
                    during = drift;
                run = (await RunsAsync(dataSource, cts.Token)).FirstOrDefault(r => r.Decision is not null);
            }
            var promotedAfter = shiftedAt.Elapsed;
            var (v1ShiftedScored, v1ShiftedFlagged) = await StatsAsync(dataSource, v1.Version, cts.Token, since: shiftStart);
            Console.WriteLine($"during the shift: PSI {during?.Psi:F3} over {during?.Events} events ({during?.Status}); "
                + $"run {run.Trigger} {run.Decision} after {promotedAfter.TotalSeconds:F1} s of shifted stream ({streamed.Count} events), training took {run.Seconds:F1} s");
            Console.WriteLine($"  v1 in serve's scoring_stats since the shift: {v1ShiftedFlagged} of {v1ShiftedScored} flagged ({(double)v1ShiftedFlagged / v1ShiftedScored:P2})");
            Console.WriteLine("  " + string.Join("\n  ", run.Reasons) + "\n  metrics: " + run.Metrics);
            Assert.NotNull(during);
            Assert.Equal((Retrainer.Drift, Retrainer.Promoted, v1.Version), (run.Trigger, run.Decision, run.ActiveVersion));
            var v2 = run.ChallengerVersion!;

            // serve follows the registry: it swaps to v2 by itself.
            await ServeFixture.WaitForOffsetsAsync(database, topic, streamed, cts.Token);
            while (detector.Current?.Version != v2)
                await Task.Delay(100, cts.Token);

            // After the swap: more of the shifted stream, scored by v2.
            var after = await ServeFixture.ProduceAsync(infrastructure, topic, ServeFixture.Events(6000, seed: 52, shift: Shift), cts.Token);
            await ServeFixture.WaitForOffsetsAsync(database, topic, after, cts.Token);
            var rows = await AnomalyRowsAsync(dataSource, topic, cts.Token);
            var injected = after.Select((e, i) => (e, i)).Where(x => x.i % 50 == 7).Select(x => (x.e.Partition, x.e.Offset)).ToHashSet();
            var v1Scores = fixture.DirectScores(after, out double v1Threshold, out _);
            var flaggedV2 = rows.Where(r => v1Scores.ContainsKey(r.Key)).ToList();
            Assert.All(flaggedV2, r => Assert.Equal(v2, r.ModelVersion));
            int scored = v1Scores.Count, normal = v1Scores.Keys.Count(k => !injected.Contains(k)), anomalies = scored - normal;
            int v1Flagged = v1Scores.Values.Count(s => s > v1Threshold);
            int v1FalsePositives = v1Scores.Count(s => s.Value > v1Threshold && !injected.Contains(s.Key));
            int v2FalsePositives = flaggedV2.Count(r => !injected.Contains(r.Key));
            int v2TruePositives = flaggedV2.Count - v2FalsePositives;
            var (v2Scored, v2StatsFlagged) = await StatsAsync(dataSource, v2, cts.Token);
            var settled = await queries.DriftAsync("sensors", cts.Token);
            using var v2Bundle = ModelBundle.Load((await new ModelRegistry(dataSource).GetActiveAsync("sensors", cts.Token))!.Onnx, "v2");
            double target = v2Bundle.Calibration.TargetFalsePositiveRate;
            Console.WriteLine($"on {scored} shifted events streamed after the swap ({anomalies} injected anomalies, target FPR {target:P1}):");
            Console.WriteLine($"  v1 (direct scores) flags {(double)v1Flagged / scored:P2}, false-positive rate on normal events {(double)v1FalsePositives / normal:P2}");
            Console.WriteLine($"  v2 (serve's rows) flags {(double)flaggedV2.Count / scored:P2}, false-positive rate {(double)v2FalsePositives / normal:P2}, "
                + $"recall of injected anomalies {(double)v2TruePositives / anomalies:P2}; scoring_stats of v2: {v2StatsFlagged} of {v2Scored} flagged");
            Console.WriteLine($"  drift of v2: PSI {settled.Psi:F3} over {settled.Events} events ({settled.Status}, {settled.ModelVersion})");

            Assert.Equal(v2, settled.ModelVersion);
            // v2's calibration describes the shifted stream, so the drift verdict, now about v2's windows, is ok again.
            Assert.Equal(ScoreDrift.Ok, settled.Status);
            // v1 flags ≈ 17 % of the shifted stream (2 % injected anomalies, 1 % target): v2 well under a third of that,
            // on the same events and in serve's own statistics.
            Assert.True(flaggedV2.Count < v1Flagged / 3, $"v2 flagged {flaggedV2.Count}, v1 {v1Flagged}");
            Assert.True((double)v2StatsFlagged / v2Scored < (double)v1ShiftedFlagged / v1ShiftedScored / 3, $"v2 {v2StatsFlagged}/{v2Scored}, v1 {v1ShiftedFlagged}/{v1ShiftedScored}");
            // Near the target: well below v1's rate on the same events, within 3× the target on normal events.
            Assert.InRange((double)v2FalsePositives / normal, 0, 3 * target);
            Assert.Single(await RunsAsync(dataSource, cts.Token));
            await app.StopAsync(cts.Token);
        }
        finally
        {
            NpgsqlConnection.ClearAllPools();
            await infrastructure.DropDatabaseAsync(database, CancellationToken.None);
        }
    }

    [Fact]
    public async Task Retraining_Interval_runs_a_scheduled_retrain_an_interval_after_the_previous_scheduled_run()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        var topic = await infrastructure.CreateTopicAsync("interval", partitions: 2, cts.Token);
        var deadLetters = await infrastructure.CreateTopicAsync("interval-dlq", partitions: 1, cts.Token);
        var database = await infrastructure.CreateDatabaseAsync("interval", cts.Token);
        try
        {
            await using var dataSource = NpgsqlDataSource.Create(database);
            await new SchemaMigrator(dataSource).MigrateAsync(cts.Token);
            var v1 = await new ModelRegistry(dataSource).RegisterFileAsync("sensors", fixture.ModelPath, activate: true, cts.Token);
            // The schedule is anchored on retrain_runs: a scheduled run 50 s ago (an earlier serve process) makes the
            // next one due 10 s from now with a one-minute interval, not a minute after this process starts.
            DateTime previous;
            await using (var command = dataSource.CreateCommand(
                """
                INSERT INTO retrain_runs (detector, started_at, finished_at, trigger, active_version, decision)
                VALUES ('sensors', now() - interval '50 seconds', now() - interval '45 seconds', 'schedule', $1, 'rejected') RETURNING started_at
                """))
            {
                command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = v1.Version });
                previous = (DateTime)(await command.ExecuteScalarAsync(cts.Token))!;
            }
            var events = await ServeFixture.ProduceAsync(infrastructure, topic, ServeFixture.Events(6000, seed: 61), cts.Token);
            var configuration = fixture.Configuration(infrastructure, topic, deadLetters, database, $"g-{Guid.NewGuid():N}", model: "sensors");
            configuration["Retraining:SampleSize"] = "3000";
            configuration["Retraining:SampleRate"] = "0.6";
            configuration["Retraining:RecentSize"] = "1000";
            configuration["Retraining:RecentRate"] = "0.4";
            configuration["Retraining:Interval"] = "00:01:00";
            configuration["Retraining:CheckInterval"] = "00:00:01";
            var started = DateTime.UtcNow;
            await using var app = ServeFixture.Host(configuration);
            await app.StartAsync(cts.Token);
            await ServeFixture.WaitForOffsetsAsync(database, topic, events, cts.Token);

            RetrainRun? run = null;
            while (run is null)
            {
                await Task.Delay(250, cts.Token);
                run = (await RunsAsync(dataSource, cts.Token)).FirstOrDefault(r => r.Started > previous && r.Decision is not null);
            }
            Console.WriteLine($"previous scheduled run {previous:HH:mm:ss.fff}, serve started {started:HH:mm:ss.fff}, scheduled run {run.Started:HH:mm:ss.fff} "
                + $"({(run.Started - previous).TotalSeconds:F1} s after the previous one): {run.Decision} in {run.Seconds:F1} s\n  " + string.Join("\n  ", run.Reasons));
            Assert.Equal((Retrainer.Schedule, v1.Version), (run.Trigger, run.ActiveVersion));
            Assert.Contains(run.Decision, new[] { Retrainer.Promoted, Retrainer.Rejected });
            Assert.True(run.Started - previous >= TimeSpan.FromMinutes(1), $"ran {(run.Started - previous).TotalSeconds:F1} s after the previous scheduled run");
            Assert.True(run.Started - started < TimeSpan.FromMinutes(1), "the run waited a whole interval after start instead of after the previous run");
            Assert.Equal(2, (await RunsAsync(dataSource, cts.Token)).Count);
            await app.StopAsync(cts.Token);
        }
        finally
        {
            NpgsqlConnection.ClearAllPools();
            await infrastructure.DropDatabaseAsync(database, CancellationToken.None);
        }
    }

    private sealed record RetrainRun(
        DateTime Started, double Seconds, string Trigger, string? ActiveVersion, string? ChallengerVersion, string? Decision, string[] Reasons, string Metrics);

    /// <summary>retrain_runs, newest first.</summary>
    private static async Task<List<RetrainRun>> RunsAsync(NpgsqlDataSource dataSource, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand(
            """
            SELECT started_at, EXTRACT(EPOCH FROM finished_at - started_at)::float8, trigger, active_version, challenger_version, decision,
                   reasons::text, jsonb_build_object('training_rows', metrics -> 'training_rows', 'sample_rows', metrics -> 'sample_rows',
                     'from_drift_window', metrics -> 'from_drift_window', 'truncation', metrics -> 'truncation')::text
            FROM retrain_runs ORDER BY started_at DESC
            """);
        var runs = new List<RetrainRun>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            runs.Add(new RetrainRun(reader.GetDateTime(0), reader.IsDBNull(1) ? double.NaN : reader.GetDouble(1), reader.GetString(2),
                reader.IsDBNull(3) ? null : reader.GetString(3), reader.IsDBNull(4) ? null : reader.GetString(4), reader.IsDBNull(5) ? null : reader.GetString(5),
                JsonSerializer.Deserialize<string[]>(reader.GetString(6))!, reader.GetString(7)));
        }
        return runs;
    }

    private static async Task<DateTime> NowAsync(NpgsqlDataSource dataSource, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand("SELECT now()");
        return (DateTime)(await command.ExecuteScalarAsync(cancellationToken))!;
    }

    private static async Task<List<((int Partition, long Offset) Key, string ModelVersion)>> AnomalyRowsAsync(
        NpgsqlDataSource dataSource, string topic, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand("SELECT \"partition\", \"offset\", model_version FROM anomalies WHERE topic = $1");
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = topic });
        var rows = new List<((int, long), string)>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
            rows.Add(((reader.GetInt32(0), reader.GetInt64(1)), reader.GetString(2)));
        return rows;
    }

    /// <summary>Events scored and flagged by <paramref name="version"/> in serve's scoring_stats, in windows starting at or after
    /// <paramref name="since"/>.</summary>
    private static async Task<(long Scored, long Flagged)> StatsAsync(NpgsqlDataSource dataSource, string version, CancellationToken cancellationToken,
        DateTime? since = null)
    {
        await using var command = dataSource.CreateCommand(
            """
            SELECT COALESCE(sum(events_scored), 0)::bigint, COALESCE(sum(events_flagged), 0)::bigint FROM scoring_stats
            WHERE model_version = $1 AND window_start >= $2
            """);
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = version });
        command.Parameters.Add(new NpgsqlParameter<DateTime> { TypedValue = since ?? DateTime.UnixEpoch });
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        await reader.ReadAsync(cancellationToken);
        return (reader.GetInt64(0), reader.GetInt64(1));
    }
}
