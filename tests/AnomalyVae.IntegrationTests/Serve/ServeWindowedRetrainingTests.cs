using System.Globalization;
using System.Text.Json;
using AnomalyVae.Inference;
using AnomalyVae.IntegrationTests.Infrastructure;
using AnomalyVae.Model;
using AnomalyVae.Retraining;
using AnomalyVae.Storage;
using AnomalyVae.Streaming;
using Npgsql;

namespace AnomalyVae.IntegrationTests.Serve;

/// <summary>
/// The model lifecycle of a windowed detector (issue #11) with a real broker, database and in-process serve: the
/// samples serve keeps hold each event's window history, the drift bins count the windowed scores, recalibration
/// scores the recent events' windows, retraining trains a windowed challenger on the sample's windows and promotes
/// it, and a registry swap to it mid-stream keeps the per-entity state and scores every event exactly once.
/// </summary>
[Collection(InfrastructureCollection.Name)]
public sealed class ServeWindowedRetrainingTests(TestInfrastructure infrastructure, ServeFixture fixture) : IClassFixture<ServeFixture>
{
    private const int H = ServeFixture.WindowSteps - 1;

    [Fact]
    public async Task A_windowed_detector_samples_windows_recalibrates_and_retrains_on_them_and_swaps_to_the_challenger_keeping_its_state()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(4));
        var clock = System.Diagnostics.Stopwatch.StartNew();
        await using var stream = await ServeStream.CreateAsync(infrastructure, "window-retrain", partitions: 2, cts.Token);
        var (topic, deadLetters, database) = stream;
        await using var dataSource = NpgsqlDataSource.Create(database);
        await new SchemaMigrator(dataSource).MigrateAsync(cts.Token);
        var registry = new ModelRegistry(dataSource);
        var v1 = (await registry.RegisterFileAsync("sensors", fixture.WindowedModelPath, activate: true, cts.Token)).Version;
        using var v1Model = ModelBundle.Load(fixture.WindowedModelPath);

        // Phase 1: a shifted stream (the model flags much of it), scored with the samples on.
        var events = await ServeFixture.ProduceAsync(infrastructure, topic, ServeFixture.Events(8000, seed: 61, shift: 1.5), cts.Token);
        var phase1End = events.GroupBy(e => e.Partition).ToDictionary(g => g.Key, g => g.Max(e => e.Offset) + 1);
        var configuration = fixture.Configuration(infrastructure, topic, deadLetters, database, $"g-{Guid.NewGuid():N}", model: "sensors");
        configuration["Detectors:0:IncidentGap"] = "00:00:00";
        configuration["Retraining:SampleSize"] = "4000";
        configuration["Retraining:SampleRate"] = "0.6";
        configuration["Retraining:RecentSize"] = "2000";
        configuration["Retraining:RecentRate"] = "0.3";
        await ServeFixture.ServeUntilStoredAsync(configuration, database, topic, events, cts.Token);
        var v1Scores = fixture.DirectWindowedScores(events, out double v1Threshold, out _, v1Model);
        var sequences = Sequences(events, v1Scores.Keys);

        // Each sample row and anomaly holds the W−1 earlier events of its entity that its window held, and their flags.
        var rows = await SampleRowsAsync(dataSource, cts.Token);
        Assert.True(rows.Count > 2000, $"only {rows.Count} sample rows");
        int steps = 0;
        foreach (var row in rows)
        {
            var (sequence, index) = sequences[row.Key];
            Assert.NotNull(row.History);
            var history = row.History.RootElement;
            var stored = history.GetProperty("steps").EnumerateArray().ToList();
            Assert.Equal(Math.Min(H, index), stored.Count);
            var flags = history.GetProperty("flagged").EnumerateArray().Select(f => f.GetBoolean()).ToList();
            Assert.Equal(stored.Count, flags.Count);
            for (int k = 0; k < stored.Count; k++)
            {
                var earlier = sequence[index - stored.Count + k];
                using var payload = JsonDocument.Parse(earlier.Payload!);
                Assert.Equal((float)payload.RootElement.GetProperty("a").GetDouble(), (float)stored[k].GetProperty("a").GetDouble());
                Assert.Equal(payload.RootElement.GetProperty("color").GetString(), stored[k].GetProperty("color").GetString());
                Assert.False(stored[k].TryGetProperty("id", out _), "a step keeps the features only");
                float score = v1Scores[(earlier.Partition, earlier.Offset)];
                if (Math.Abs(score - v1Threshold) > 1e-3)
                    Assert.Equal(score > v1Threshold, flags[k]);
                steps++;
            }
        }

        // Drift bins: every phase-1 event in the bin of its windowed score.
        var edges = ScoreDrift.Edges(v1Model.Calibration);
        var direct = new long[ScoreDrift.BinCount];
        foreach (var score in v1Scores.Values)
            direct[ScoreDrift.BinOf(edges, score)]++;
        Assert.Equal(direct, await BinsAsync(dataSource, v1, cts.Token));

        // Feedback: 25 flagged events that are not injected anomalies (nor in the recent slice) are false positives.
        var injected = events.Where((_, i) => i % 50 == 7).Select(e => (e.Partition, e.Offset)).ToHashSet();
        var recentKeys = (await SampleRowsAsync(dataSource, cts.Token, "recent_events")).Select(r => r.Key).ToHashSet();
        var anomalies = await AnomaliesAsync(dataSource, cts.Token);
        var falsePositives = anomalies.Keys.Where(k => !injected.Contains(k) && !recentKeys.Contains(k)).Order().Take(25).ToList();
        Assert.Equal(25, falsePositives.Count);
        await LabelAsync(dataSource, falsePositives, cts.Token);

        // Recalibration scores the windows of the recent events and of the labelled anomalies (stored with them):
        // its quantiles are those of the scores serve stored for them (windows scored in serve).
        var recentScores = await ScalarsAsync<double>(dataSource, "SELECT score FROM recent_events WHERE detector = 'sensors'", cts.Token);
        var fpScores = falsePositives.Select(k => anomalies[k].Score).Order().ToArray();
        var recalibrated = await new Recalibrator(dataSource).RunAsync("sensors", cancellationToken: cts.Token);
        double expectedThreshold = RetrainingGates.Quantile([.. recentScores.Concat(fpScores).Order()], 1 - v1Model.Calibration.TargetFalsePositiveRate);
        Assert.Equal(recentScores.Count + 25, recalibrated.SampleRows);
        Assert.Equal(expectedThreshold, recalibrated.FprThreshold, 1e-4 * Math.Max(1, Math.Abs(expectedThreshold)));
        Assert.Equal(25, recalibrated.LabelledFalsePositives);
        Assert.Equal(0, recalibrated.FalsePositivesPassingOld);
        double expectedFp = RetrainingGates.Quantile(fpScores, Recalibrator.DefaultFalsePositivePassShare);
        Assert.Equal(expectedFp, recalibrated.FalsePositiveThreshold!.Value, 1e-4 * Math.Max(1, Math.Abs(expectedFp)));
        var v1r = recalibrated.NewVersion;
        Assert.NotEqual(v1, v1r);

        // Retraining: a windowed challenger of the same window, trained on the sample's windows, promoted. It is
        // compared with v1, whose flag rate on the shifted recent events shows the sample truncated at its threshold
        // (the recalibrated version flags 1 % of them by construction, which leaves nothing to correct).
        await registry.ActivateAsync("sensors", v1, cts.Token);
        var training = new AnomalyVae.Training.Engine.VaeTrainingOptions { Hidden = [16, 8], Latent = 3, Epochs = 12, Threads = 1, Seed = 3, ValidationFraction = 0.25 };
        var outcome = await new Retrainer(dataSource, new RetrainingGateOptions(), training).RunAsync("sensors", Retrainer.Manual, cts.Token);
        Console.WriteLine($"windowed retrain {outcome.Decision} on {outcome.TrainingRows} windows ({rows.Count} sample rows, {steps} history steps checked): "
            + string.Join("; ", outcome.Reasons) + $"; recalibrated threshold {recalibrated.OldThreshold:F3} -> {recalibrated.NewThreshold:F3}");
        Assert.Equal(Retrainer.Promoted, outcome.Decision);
        Assert.Equal(v1, outcome.ActiveVersion);
        // The labelled false positives joined the training windows and were evaluated as windows.
        Assert.Equal(25, outcome.FalsePositivesAdded);
        Assert.Equal(25, outcome.Active!.LabelledFalsePositives);
        var v2 = outcome.ChallengerVersion!;
        var active = await registry.GetActiveAsync("sensors", cts.Token);
        Assert.Equal(v2, active!.Version);
        using var v2Model = ModelBundle.Load(active.Onnx, "challenger");
        Assert.Equal(v1Model.Window, v2Model.Window);
        // The encoding is kept (only centers and scales are refitted), so serve keeps its window state on the swap.
        Assert.Equal(EntityWindows.Fingerprint(v1Model.Schema), EntityWindows.Fingerprint(v2Model.Schema));
        using var v1rModel = ModelBundle.Load(await OnnxAsync(dataSource, v1r, cts.Token), "recalibrated");

        // Phase 2: back to the recalibrated version, then the challenger is activated mid-stream; every event stored.
        await registry.ActivateAsync("sensors", v1r, cts.Token);
        int port = ServeFixture.FreePort();
        configuration = fixture.Configuration(infrastructure, topic, deadLetters, database, configuration["Kafka:GroupId"]!, port, model: "sensors");
        configuration["Detectors:0:IncidentGap"] = "00:00:00";
        configuration["Detectors:0:Threshold"] = "-1e9";
        var phase2 = await ServeFixture.ProduceAsync(infrastructure, topic, ServeFixture.Events(16_000, seed: 62, shift: 1.5), cts.Token);
        events.AddRange(phase2);
        await using (var app = ServeFixture.Host(configuration))
        {
            await app.StartAsync(cts.Token);
            using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}") };
            Assert.Equal(v1r, (await ServeFixture.ReadyAsync(http, cts.Token)).Version);
            await ServeFixture.WaitForProgressAsync(database, topic, partitions: 2, atLeast: phase1End.Values.Max() + 1000, cts.Token);
            await registry.ActivateAsync("sensors", v2, cts.Token);
            await ServeFixture.WaitForVersionAsync(http, v2, cts.Token);
            await ServeFixture.WaitForOffsetsAsync(database, topic, events, cts.Token);
            await app.StopAsync(cts.Token);
        }

        var stored2 = await AnomaliesAsync(dataSource, cts.Token);
        var v2Scores = fixture.DirectWindowedScores(events, out double v2Threshold, out _, v2Model);
        var expectedPhase2 = v2Scores.Keys.Where(k => k.Offset >= phase1End[k.Partition]).Order().ToList();
        var storedPhase2 = stored2.Keys.Where(k => k.Offset >= phase1End[k.Partition]).Order().ToList();
        // Exactly once: every decodable phase-2 event has one row (the threshold stores all of them).
        Assert.Equal(expectedPhase2, storedPhase2);
        var thresholds = new Dictionary<string, double> { [v1] = v1Threshold, [v1r] = v1rModel.Calibration.Threshold, [v2] = v2Threshold };
        foreach (var partition in storedPhase2.GroupBy(k => k.Partition))
        {
            var versions = partition.OrderBy(k => k.Offset).Select(k => stored2[k].Version).ToList();
            int switchAt = versions.IndexOf(v2);
            Assert.True(switchAt > 0, $"partition {partition.Key}: no {v1r} rows before {v2}");
            Assert.All(versions.Take(switchAt), v => Assert.Equal(v1r, v));
            Assert.All(versions.Skip(switchAt), v => Assert.Equal(v2, v));
        }

        // The challenger's scores equal those of its windows over the whole stream (phase 1 included), so its first
        // events after the swap saw the history kept from before it. Compared where no history step was flagged
        // (serve's flags came from the model that scored each step, the direct run's from the challenger).
        bool ServeFlagged((int Partition, long Offset) key) => key.Offset < phase1End[key.Partition]
            ? stored2.ContainsKey(key)
            : stored2.TryGetValue(key, out var row) && row.Score > thresholds[row.Version];
        var all = Sequences(events, v2Scores.Keys);
        int compared = 0, justAfterSwap = 0;
        foreach (var key in storedPhase2.Where(k => stored2[k].Version == v2))
        {
            var (sequence, index) = all[key];
            var history = Enumerable.Range(Math.Max(0, index - H), Math.Min(H, index)).Select(i => (sequence[i].Partition, sequence[i].Offset)).ToList();
            if (history.Any(k => ServeFlagged(k) || v2Scores[k] > v2Threshold))
                continue;
            Assert.True(Math.Abs(v2Scores[key] - stored2[key].Score) <= 1e-4 * Math.Max(1, Math.Abs(v2Scores[key])),
                $"{key}: serve scored {stored2[key].Score}, the challenger's window {v2Scores[key]}");
            compared++;
            if (history.Any(k => k.Offset < phase1End[k.Partition] || (stored2.TryGetValue(k, out var h) && h.Version != v2)))
                justAfterSwap++;
        }
        Console.WriteLine($"windowed swap: {compared} challenger scores compared, {justAfterSwap} of them with history from before the swap; test {clock.Elapsed.TotalSeconds:F1} s");
        Assert.True(justAfterSwap > 0, "no event after the swap had history from before it");
        Assert.True(compared > expectedPhase2.Count / 4, $"only {compared} challenger scores compared");
    }

    /// <summary>Per decodable event, its (partition, entity)'s decodable events in offset order and its index there.</summary>
    private static Dictionary<(int Partition, long Offset), (List<ProducedEvent> Sequence, int Index)> Sequences(
        List<ProducedEvent> events, IEnumerable<(int Partition, long Offset)> decodable)
    {
        var keep = decodable.ToHashSet();
        var result = new Dictionary<(int, long), (List<ProducedEvent>, int)>();
        foreach (var group in events.Where(e => keep.Contains((e.Partition, e.Offset))).GroupBy(e => (e.Partition, ServeFixture.Entity(e.Payload!))))
        {
            var sequence = group.OrderBy(e => e.Offset).ToList();
            for (int i = 0; i < sequence.Count; i++)
                result[(sequence[i].Partition, sequence[i].Offset)] = (sequence, i);
        }
        return result;
    }

    private sealed record SampleRow((int Partition, long Offset) Key, JsonDocument? History);

    private static async Task<List<SampleRow>> SampleRowsAsync(NpgsqlDataSource dataSource, CancellationToken cancellationToken, string? table = null)
    {
        var rows = new List<SampleRow>();
        await using var command = dataSource.CreateCommand(table is not null
            ? $"SELECT \"partition\", \"offset\", history::text FROM {table} WHERE detector = 'sensors'"
            : """
            SELECT "partition", "offset", history::text FROM training_sample WHERE detector = 'sensors'
            UNION ALL SELECT "partition", "offset", history::text FROM recent_events WHERE detector = 'sensors'
            UNION ALL SELECT "partition", "offset", history::text FROM anomalies WHERE detector = 'sensors'
            """);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
            rows.Add(new SampleRow((reader.GetInt32(0), reader.GetInt64(1)), reader.IsDBNull(2) ? null : JsonDocument.Parse(reader.GetString(2))));
        return rows;
    }

    private static async Task<long[]> BinsAsync(NpgsqlDataSource dataSource, string version, CancellationToken cancellationToken)
    {
        var stored = new long[ScoreDrift.BinCount];
        await using var command = dataSource.CreateCommand("SELECT score_bins FROM scoring_stats WHERE detector = 'sensors' AND model_version = $1");
        command.Parameters.AddWithValue(version);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            var bins = reader.GetFieldValue<long[]>(0);
            for (int k = 0; k < bins.Length; k++)
                stored[k] += bins[k];
        }
        return stored;
    }

    private static async Task LabelAsync(NpgsqlDataSource dataSource, List<(int Partition, long Offset)> keys, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand(
            """
            INSERT INTO anomaly_feedback (anomaly_id, label, source)
            SELECT a.id, 'false_positive', 'test' FROM anomalies a JOIN unnest($1::integer[], $2::bigint[]) AS k(p, o)
              ON a.detector = 'sensors' AND a."partition" = k.p AND a."offset" = k.o
            """);
        command.Parameters.AddWithValue(keys.Select(k => k.Partition).ToArray());
        command.Parameters.AddWithValue(keys.Select(k => k.Offset).ToArray());
        Assert.Equal(keys.Count, await command.ExecuteNonQueryAsync(cancellationToken));
    }

    private static async Task<List<T>> ScalarsAsync<T>(NpgsqlDataSource dataSource, string sql, CancellationToken cancellationToken)
    {
        var values = new List<T>();
        await using var command = dataSource.CreateCommand(sql);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
            values.Add(reader.GetFieldValue<T>(0));
        return values;
    }

    private static async Task<byte[]> OnnxAsync(NpgsqlDataSource dataSource, string version, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand("SELECT onnx FROM models WHERE detector = 'sensors' AND version = $1");
        command.Parameters.AddWithValue(version);
        return (byte[])(await command.ExecuteScalarAsync(cancellationToken))!;
    }

    private static async Task<Dictionary<(int Partition, long Offset), (double Score, string Version)>> AnomaliesAsync(
        NpgsqlDataSource dataSource, CancellationToken cancellationToken)
    {
        var rows = new Dictionary<(int, long), (double, string)>();
        await using var command = dataSource.CreateCommand("SELECT \"partition\", \"offset\", score, model_version FROM anomalies WHERE detector = 'sensors'");
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
            rows.Add((reader.GetInt32(0), reader.GetInt64(1)), (reader.GetDouble(2), reader.GetString(3)));
        return rows;
    }
}
