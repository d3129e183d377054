using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using AnomalyVae.Events;
using AnomalyVae.Inference;
using AnomalyVae.IntegrationTests.Api;
using AnomalyVae.IntegrationTests.Infrastructure;
using AnomalyVae.Model;
using AnomalyVae.Retraining;
using AnomalyVae.Storage;
using AnomalyVae.Streaming;
using AnomalyVae.Tests;
using AnomalyVae.Tools;
using AnomalyVae.Training;
using AnomalyVae.Training.Engine;
using AnomalyVae.Training.Export;
using Npgsql;
using Xunit.Abstractions;

namespace AnomalyVae.IntegrationTests.Retraining;

/// <summary>
/// Retraining and recalibration against real PostgreSQL: training_sample and recent_events are filled directly with
/// generated sensor events (what serve writes), the active model is trained on unshifted events.
/// </summary>
[Collection(InfrastructureCollection.Name)]
public sealed class RetrainingTests(TestInfrastructure infrastructure, ITestOutputHelper output) : IAsyncLifetime
{
    private const string Detector = "sensors";

    /// <summary>Small and fast: a challenger trains in well under a second on 4000 rows.</summary>
    private static readonly VaeTrainingOptions s_training = new() { Hidden = [24], Latent = 3, Epochs = 12, Threads = 1, ValidationFraction = 0.25 };

    private static readonly FeatureSpec s_spec = new([
        new("temperature", FeatureKind.Numeric), new("vibration", FeatureKind.Numeric), new("pressure", FeatureKind.Numeric),
        new("rpm", FeatureKind.Numeric), new("current", FeatureKind.Numeric), new("status", FeatureKind.Categorical),
    ]);

    private static readonly Lazy<byte[]> s_activeModel = new(() => TrainActiveModel(s_spec, ScoreFunction.ReconstructionProbability));

    private string _connectionString = "";
    private NpgsqlDataSource _dataSource = null!;

    public async Task InitializeAsync()
    {
        _connectionString = await infrastructure.CreateDatabaseAsync("retrain", CancellationToken.None);
        await AnomalySeed.MigrateAsync(_connectionString);
        _dataSource = NpgsqlDataSource.Create(_connectionString);
    }

    public async Task DisposeAsync()
    {
        await _dataSource.DisposeAsync();
        await infrastructure.DropDatabaseAsync(_connectionString, CancellationToken.None);
    }

    [Fact]
    public async Task A_challenger_trained_on_a_shifted_stream_is_promoted_and_flags_near_the_target_rate()
    {
        var active = await new ModelRegistry(_dataSource).RegisterAsync(Detector, s_activeModel.Value, "active", activate: true);
        await InsertSampleAsync("training_sample", SensorEvents(skip: 4000, count: 4000, shift: true));
        await InsertSampleAsync("recent_events", SensorEvents(skip: 8000, count: 1500, shift: true));

        var outcome = await new Retrainer(_dataSource, new RetrainingGateOptions(), s_training).RunAsync(Detector, Retrainer.Manual);
        Report(outcome);

        Assert.Equal(Retrainer.Promoted, outcome.Decision);
        Assert.Equal(active.Version, outcome.ActiveVersion);
        Assert.True(outcome.Active!.FlagRate > 0.2, $"the active model should flag much of the shifted stream, flagged {outcome.Active.FlagRate:P2}");
        Assert.True(outcome.Challenger!.FlagRate <= 0.03, $"challenger flag rate {outcome.Challenger.FlagRate:P2} is not near the 1 % target");
        Assert.True(outcome.Challenger.MeanNll < outcome.Active.MeanNll);
        // The active model drifts and flags far above its target on the recent slice, so the sample counts as
        // truncated: half of the slice calibrates the challenger's threshold, the other half is evaluated on.
        Assert.True(outcome.Truncation!.Truncated);
        Assert.Equal(750, outcome.Challenger.Rows);
        Assert.Equal(750, outcome.Truncation.CalibrationRows);
        Assert.Equal(outcome.Truncation.Threshold, outcome.Challenger.Threshold);

        var models = await new ModelRegistry(_dataSource).ListAsync(Detector);
        var promoted = Assert.Single(models, m => m.Status == ModelRegistry.Active);
        Assert.Equal(outcome.ChallengerVersion, promoted.Version);
        Assert.Equal(ModelRegistry.Retired, models.Single(m => m.Version == active.Version).Status);
        Assert.NotNull(promoted.EvaluationMetrics);
        Assert.Equal(6, promoted.EvaluationMetrics!.Value.GetProperty("gates").GetArrayLength());

        var run = await LatestRunAsync();
        Assert.Equal((Retrainer.Promoted, "manual", active.Version, outcome.ChallengerVersion), (run.Decision, run.Trigger, run.ActiveVersion, run.ChallengerVersion));
        Assert.Equal(6, run.Reasons.Length);
        Assert.All(run.Reasons, r => Assert.StartsWith("pass ", r));
        Assert.Equal(4000, run.Metrics.GetProperty("training_rows").GetInt32());
        var challenger = ModelFile.Read(await ModelBytesAsync(outcome.ChallengerVersion!), "challenger");
        Assert.Equal(ScoreFunction.ReconstructionProbability, challenger.Model.ScoreFunction);
        Assert.All(challenger.Schema.Features, f => Assert.Null(f.QuantileMap));
    }

    [Fact]
    public async Task A_challenger_keeps_the_active_models_opt_in_elbo_score_and_quantile_maps()
    {
        byte[] optIn = TrainActiveModel(s_spec.WithQuantileMaps(), ScoreFunction.NegativeElbo);
        await new ModelRegistry(_dataSource).RegisterAsync(Detector, optIn, "opt-in", activate: true);
        await InsertSampleAsync("training_sample", SensorEvents(skip: 4000, count: 4000, shift: true));
        await InsertSampleAsync("recent_events", SensorEvents(skip: 8000, count: 1500, shift: true));

        var outcome = await new Retrainer(_dataSource, new RetrainingGateOptions(), s_training).RunAsync(Detector, Retrainer.Manual);
        Report(outcome);

        Assert.NotNull(outcome.ChallengerVersion);
        var challenger = ModelFile.Read(await ModelBytesAsync(outcome.ChallengerVersion!), "challenger");
        Assert.All(challenger.Members, m => Assert.Equal(ScoreFunction.NegativeElbo, m.ScoreFunction));
        Assert.Equal(5, challenger.Schema.Features.Count(f => f.QuantileMap is not null)); // the five numeric fields, refitted
        Assert.NotEqual(ModelFile.Read(optIn, "active").Schema.Features[0].QuantileMap!.Knots, challenger.Schema.Features[0].QuantileMap!.Knots);
        // The gates compared the two in the data's units (the maps' log-slopes in the comparable NLL): both finite.
        Assert.True(double.IsFinite(outcome.Challenger!.MeanNll) && double.IsFinite(outcome.Active!.MeanNll), $"{outcome.Challenger.MeanNll} / {outcome.Active!.MeanNll}");
    }

    [Fact]
    public async Task A_windowed_models_sample_rows_without_a_stored_window_are_skipped_not_trained_as_single_events()
    {
        var csv = new StringBuilder("machine,ts,temperature\n");
        var random = new Random(3);
        for (int t = 0; t < 200; t++)
        {
            foreach (var machine in new[] { "m1", "m2" })
                csv.Append(CultureInfo.InvariantCulture, $"{machine},{t},{20 + random.NextDouble():F3}\n");
        }
        var path = Path.Combine(Path.GetTempPath(), $"avae-retrain-window-{Guid.NewGuid():N}.csv");
        File.WriteAllText(path, csv.ToString());
        byte[] windowed;
        try
        {
            windowed = Trainer.TrainWindowed(path, null, "machine", "ts", steps: 4, s_training with { Seed = 2 }).ToOnnx();
        }
        finally
        {
            File.Delete(path);
        }
        await new ModelRegistry(_dataSource).RegisterAsync("kpis", windowed, "windowed", activate: true);

        // Rows as serve wrote them before migration 0010 (no history): their windows are unknown.
        var rows = Enumerable.Range(0, 1200).Select(i => string.Create(CultureInfo.InvariantCulture,
            $"{{\"machine\":\"m{i % 2}\",\"ts\":{i / 2},\"temperature\":{20 + (i % 7 / 10.0)}}}")).ToList();
        await InsertSampleAsync("training_sample", rows, detector: "kpis");

        var outcome = await new Retrainer(_dataSource, new RetrainingGateOptions(), s_training).RunAsync("kpis", Retrainer.Manual);

        Assert.Equal(Retrainer.Rejected, outcome.Decision);
        Assert.Equal(0, outcome.TrainingRows);
        Assert.Equal(1200, outcome.SampleRows);
        Assert.Contains(outcome.Reasons, r => r.StartsWith("FAIL training_rows: 0 rows", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_challenger_trained_on_noise_is_rejected_by_the_gates_and_the_active_model_stays()
    {
        var active = await new ModelRegistry(_dataSource).RegisterAsync(Detector, s_activeModel.Value, "active", activate: true);
        await InsertSampleAsync("training_sample", NoiseEvents(seed: 5, count: 3000));
        await InsertSampleAsync("recent_events", SensorEvents(skip: 8000, count: 1000, shift: false));

        var outcome = await new Retrainer(_dataSource, new RetrainingGateOptions(), s_training).RunAsync(Detector, Retrainer.Schedule);
        Report(outcome);

        Assert.Equal(Retrainer.Rejected, outcome.Decision);
        var nll = Assert.Single(outcome.Gates, g => g.Name == RetrainingGates.HeldOutNll);
        Assert.False(nll.Passed);
        // By a wide margin, with the anomalous tail of each model left out of the comparison.
        double perFeature = (outcome.Challenger!.TrimmedNll - outcome.Active!.TrimmedNll) / outcome.Challenger.Features;
        Assert.True(perFeature > 10 * new RetrainingGateOptions().MaxNllIncreasePerFeature, $"+{perFeature} nats per feature");
        Assert.Contains(outcome.Reasons, r => r.StartsWith("FAIL held_out_nll", StringComparison.Ordinal));
        var models = await new ModelRegistry(_dataSource).ListAsync(Detector);
        Assert.Equal(active.Version, Assert.Single(models, m => m.Status == ModelRegistry.Active).Version);
        Assert.Equal(ModelRegistry.Candidate, models.Single(m => m.Version == outcome.ChallengerVersion).Status);
        var run = await LatestRunAsync();
        Assert.Equal((Retrainer.Rejected, "schedule"), (run.Decision, run.Trigger));
        Assert.Contains(run.Reasons, r => r.StartsWith("FAIL held_out_nll", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_run_that_finds_the_lock_held_is_skipped_and_two_concurrent_runs_train_once()
    {
        await new ModelRegistry(_dataSource).RegisterAsync(Detector, s_activeModel.Value, "active", activate: true);
        await InsertSampleAsync("training_sample", SensorEvents(skip: 4000, count: 4000, shift: false));
        await InsertSampleAsync("recent_events", SensorEvents(skip: 8000, count: 500, shift: false));
        var retrainer = new Retrainer(_dataSource, new RetrainingGateOptions(), s_training);

        await using (var holder = await _dataSource.OpenConnectionAsync())
        {
            await using (var take = new NpgsqlCommand($"SELECT pg_advisory_lock({Retrainer.LockKeySql})", holder))
            {
                take.Parameters.Add(new NpgsqlParameter<string> { TypedValue = Detector });
                await take.ExecuteNonQueryAsync();
            }
            var skipped = await retrainer.RunAsync(Detector, Retrainer.Drift);
            Assert.Equal(Retrainer.Skipped, skipped.Decision);
            Assert.Contains("holds the lock", Assert.Single(skipped.Reasons));
            Assert.Null(skipped.ChallengerVersion);
        }
        Assert.Single(await new ModelRegistry(_dataSource).ListAsync(Detector));

        // Both start together; the loser's lock attempt comes long before the winner's training ends.
        var runs = await Task.WhenAll(
            Task.Run(() => retrainer.RunAsync(Detector, Retrainer.Manual)),
            Task.Run(() => retrainer.RunAsync(Detector, Retrainer.Manual)));
        output.WriteLine(string.Join(", ", runs.Select(r => r.Decision)));
        Assert.Single(runs, r => r.Decision == Retrainer.Skipped);
        Assert.Single(runs, r => r.Decision is Retrainer.Promoted or Retrainer.Rejected);
        Assert.Equal(2, (await new ModelRegistry(_dataSource).ListAsync(Detector)).Count);

        // The lock is released after each run: a later run trains again.
        var again = await retrainer.RunAsync(Detector, Retrainer.Manual);
        Assert.NotEqual(Retrainer.Skipped, again.Decision);
    }

    [Fact]
    public async Task A_drift_triggered_run_trains_on_the_rows_sampled_within_the_drift_window_when_there_are_enough()
    {
        var active = await new ModelRegistry(_dataSource).RegisterAsync(Detector, s_activeModel.Value, "active", activate: true);
        // The reservoir still holds 3000 rows sampled two hours ago (noise here, to make them unmistakable) and 1500
        // rows of the shifted stream sampled just now.
        await InsertSampleAsync("training_sample", NoiseEvents(seed: 9, count: 3000));
        await using (var age = _dataSource.CreateCommand("UPDATE training_sample SET sampled_at = now() - interval '2 hours'"))
            await age.ExecuteNonQueryAsync();
        await InsertSampleAsync("training_sample", SensorEvents(skip: 4000, count: 1500, shift: true), firstSlot: 3000);
        await InsertSampleAsync("recent_events", SensorEvents(skip: 8000, count: 1500, shift: true));

        var drift = await new Retrainer(_dataSource, new RetrainingGateOptions(), s_training, driftWindow: TimeSpan.FromHours(1)).RunAsync(Detector, Retrainer.Drift);
        Report(drift);
        Assert.Equal((true, 1500, 4500), (drift.FromDriftWindow, drift.TrainingRows, drift.SampleRows));
        Assert.Equal(Retrainer.Promoted, drift.Decision);
        var run = await LatestRunAsync();
        Assert.True(run.Metrics.GetProperty("from_drift_window").GetBoolean());
        Assert.Equal(4500, run.Metrics.GetProperty("sample_rows").GetInt32());

        // Fewer window rows than Gates:MinTrainingRows, or a run not triggered by drift: the whole sample.
        var few = await new Retrainer(_dataSource, new RetrainingGateOptions { MinTrainingRows = 2000 }, s_training, driftWindow: TimeSpan.FromHours(1))
            .RunAsync(Detector, Retrainer.Drift);
        Assert.Equal((false, 4500), (few.FromDriftWindow, few.TrainingRows));
        var manual = await new Retrainer(_dataSource, new RetrainingGateOptions(), s_training, driftWindow: TimeSpan.FromHours(1)).RunAsync(Detector, Retrainer.Manual);
        Assert.Equal((false, 4500), (manual.FromDriftWindow, manual.TrainingRows));
        Assert.NotEqual(active.Version, drift.ChallengerVersion);
    }

    [Fact]
    public async Task Too_few_training_rows_reject_before_training()
    {
        await new ModelRegistry(_dataSource).RegisterAsync(Detector, s_activeModel.Value, "active", activate: true);
        await InsertSampleAsync("training_sample", SensorEvents(skip: 4000, count: 50, shift: false));

        var outcome = await new Retrainer(_dataSource, new RetrainingGateOptions { MinTrainingRows = 100 }, s_training).RunAsync(Detector, Retrainer.Manual);

        Assert.Equal(Retrainer.Rejected, outcome.Decision);
        Assert.Equal(["FAIL training_rows: 50 rows, at least 100 needed"], outcome.Reasons);
        Assert.Null(outcome.ChallengerVersion);
        Assert.Single(await new ModelRegistry(_dataSource).ListAsync(Detector));
    }

    [Fact]
    public async Task Recalibration_lets_labelled_false_positives_pass_keeps_the_sample_rate_and_activates_a_new_version()
    {
        var registry = new ModelRegistry(_dataSource);
        var active = await registry.RegisterAsync(Detector, s_activeModel.Value, "active", activate: true);
        var recent = SensorEvents(skip: 8000, count: 1000, shift: false);
        await InsertSampleAsync("recent_events", recent);
        // Mildly unusual readings users marked as fine, and gross ones they confirmed.
        var falsePositives = SensorEvents(skip: 9500, count: 20, shift: false, temperatureOffset: 18);
        var truePositives = SensorEvents(skip: 9600, count: 5, shift: false, temperatureOffset: 60);
        await InsertLabelledAsync(falsePositives, "false_positive", firstOffset: 1_000_000);
        await InsertLabelledAsync(truePositives, "true_positive", firstOffset: 2_000_000);

        using var before = ModelBundle.Load(s_activeModel.Value, "active");
        var fpBefore = Scores(before, falsePositives);
        output.WriteLine($"false positives flagged by the active model: {fpBefore.Count(s => s > before.Calibration.Threshold)} of 20");
        Assert.True(fpBefore.Count(s => s > before.Calibration.Threshold) >= 10, "the test's false positives should mostly be flagged by the active model");

        var outcome = await new Recalibrator(_dataSource).RunAsync(Detector, 0.01);
        output.WriteLine($"threshold {outcome.OldThreshold:G5} -> {outcome.NewThreshold:G5} (fpr {outcome.FprThreshold:G5}, fp {outcome.FalsePositiveThreshold:G5}); " +
            $"sample {outcome.SampleRows} flagged {outcome.SampleFlagRateOld:P2} -> {outcome.SampleFlagRateNew:P2}; " +
            $"FPs passing {outcome.FalsePositivesPassingOld} -> {outcome.FalsePositivesPassingNew}/{outcome.LabelledFalsePositives}; TPs flagged {outcome.TruePositivesFlaggedNew}/{outcome.LabelledTruePositives}");

        Assert.NotEqual(active.Version, outcome.NewVersion);
        Assert.Equal(Math.Max(outcome.FprThreshold, outcome.FalsePositiveThreshold!.Value), outcome.NewThreshold);
        var now = await registry.GetActiveAsync(Detector);
        Assert.Equal(outcome.NewVersion, now!.Version);
        using var after = ModelBundle.Load(now.Onnx, "recalibrated");
        Assert.Equal(outcome.NewThreshold, after.Calibration.Threshold);

        // Checked by scoring with the activated model: most labelled false positives pass, the sample's flag rate
        // is at most the target, the confirmed anomalies are still flagged, and the weights did not change.
        var fpAfter = Scores(after, falsePositives);
        Assert.True(fpAfter.Count(s => s <= after.Calibration.Threshold) >= 18, $"{fpAfter.Count(s => s <= after.Calibration.Threshold)} of 20 false positives pass");
        var sampleAfter = Scores(after, recent);
        Assert.True(sampleAfter.Count(s => s > after.Calibration.Threshold) <= 10, $"{sampleAfter.Count(s => s > after.Calibration.Threshold)} of 1000 sample events flagged");
        Assert.All(Scores(after, truePositives), s => Assert.True(s > after.Calibration.Threshold));
        Assert.Equal(fpBefore, fpAfter);

        // Same request again: the threshold is already there, nothing new is registered.
        var again = await new Recalibrator(_dataSource).RunAsync(Detector, 0.01);
        Assert.Equal(outcome.NewVersion, again.NewVersion);
        Assert.Equal(2, (await registry.ListAsync(Detector)).Count);
    }

    [Fact]
    public async Task The_cli_explains_bad_arguments_unknown_detectors_and_missing_samples_with_exit_codes()
    {
        var missing = Cli(2, "retrain");
        Assert.Contains("--detector", missing.Stderr);
        Assert.Contains("'hourly'", Cli(2, "retrain", "--detector", Detector, "--trigger", "hourly", "--connection", _connectionString).Stderr);

        var unknown = Cli(1, "retrain", "--detector", "nosuch", "--connection", _connectionString);
        Assert.Contains("unknown detector 'nosuch'", unknown.Stderr);

        await new ModelRegistry(_dataSource).RegisterAsync(Detector, s_activeModel.Value, "active", activate: true);
        var noSample = Cli(1, "retrain", "--detector", Detector, "--connection", _connectionString);
        Assert.Contains("failed", noSample.Stdout);
        Assert.Contains("no training sample", noSample.Stdout);
        Assert.Equal(Retrainer.Failed, (await LatestRunAsync()).Decision);

        await InsertSampleAsync("training_sample", SensorEvents(skip: 4000, count: 40, shift: false));
        var tooFew = Cli(0, "retrain", "--detector", Detector, "--connection", _connectionString);
        Assert.Contains("rejected before training", tooFew.Stdout);
        Assert.Contains("FAIL training_rows: 40 rows, at least 1000 needed", tooFew.Stdout);
        Cli(3, "retrain", "--detector", Detector, "--fail-on-reject", "--connection", _connectionString);

        var config = Path.Combine(Path.GetTempPath(), $"avae-retrain-{Guid.NewGuid():N}.json");
        await File.WriteAllTextAsync(config, """{"Retraining": {"Gates": {"MaxFlagRateFactor": 0.5}}}""");
        try
        {
            Assert.Contains("MaxFlagRateFactor", Cli(1, "retrain", "--detector", Detector, "--config", config, "--connection", _connectionString).Stderr);
        }
        finally
        {
            File.Delete(config);
        }

        Assert.Contains("target false-positive rate", Cli(1, "recalibrate", "--detector", Detector, "--target-fpr", "2", "--connection", _connectionString).Stderr);
        Assert.Contains("scorable recent events", Cli(1, "recalibrate", "--detector", Detector, "--connection", _connectionString).Stderr);
        Assert.Contains("no active model", Cli(1, "recalibrate", "--detector", "nosuch", "--connection", _connectionString).Stderr);
    }

    private void Report(RetrainOutcome outcome)
    {
        output.WriteLine($"{outcome.Decision}: training rows {outcome.TrainingRows}");
        foreach (var (name, e) in new[] { ("active", outcome.Active), ("challenger", outcome.Challenger) })
        {
            if (e is not null)
                output.WriteLine($"  {name}: flag rate {e.FlagRate:P2} at threshold {e.Threshold:G5}, mean score {e.MeanScore:G5}, held-out NLL {e.MeanNll:G5} over {e.Rows} events");
        }
        if (outcome.Truncation is { } t)
            output.WriteLine($"  truncation: {t}");
        foreach (var reason in outcome.Reasons)
            output.WriteLine("  " + reason);
    }

    private static float[] Scores(ModelBundle bundle, List<string> events)
    {
        var decoder = new EventDecoder(bundle.Schema);
        int f = bundle.Schema.Count;
        var x = new float[events.Count * f];
        var mask = new float[events.Count * f];
        for (int i = 0; i < events.Count; i++)
            Assert.True(decoder.Decode(Encoding.UTF8.GetBytes(events[i]), x.AsSpan(i * f, f), mask.AsSpan(i * f, f)).IsSuccess);
        return bundle.Score(new FeatureTable(bundle.Schema, x, mask)).Scores;
    }

    /// <summary>Sensor events as JSON; "shift" moves the fleet's operating point (hotter, higher pressure, more current).</summary>
    /// <remarks>One fleet (seed 1) throughout, as one detector sees; <paramref name="skip"/> moves on in its stream, so
    /// the active model's data, the training sample and the recent events are different readings of the same machines.</remarks>
    private static List<string> SensorEvents(int skip, int count, bool shift, double temperatureOffset = 0)
    {
        var generator = new SensorStream(seed: 1, anomalyRate: 0, machines: 10);
        for (int i = 0; i < skip; i++)
            generator.Next();
        var events = new List<string>(count);
        for (int i = 0; i < count; i++)
        {
            generator.Next();
            double t = generator.Number(SensorStream.TemperatureColumn) + temperatureOffset + (shift ? 12 : 0);
            double p = generator.Number(SensorStream.PressureColumn) * (shift ? 1.6 : 1);
            double c = generator.Number(SensorStream.CurrentColumn) * (shift ? 1.5 : 1);
            events.Add(JsonSerializer.Serialize(new
            {
                machine_id = generator.EntityId,
                temperature = t,
                vibration = generator.Number(SensorStream.VibrationColumn),
                pressure = p,
                rpm = generator.Number(SensorStream.RpmColumn),
                current = c,
                status = generator.Text(SensorStream.StatusColumn),
            }));
        }
        return events;
    }

    /// <summary>Readings that are no machine at all: independent uniform values over wide ranges, random statuses.</summary>
    private static List<string> NoiseEvents(int seed, int count)
    {
        var random = new Random(seed);
        return [.. Enumerable.Range(0, count).Select(_ => JsonSerializer.Serialize(new
        {
            temperature = random.NextDouble() * 400 - 100,
            vibration = random.NextDouble() * 50,
            pressure = random.NextDouble() * 100,
            rpm = random.NextDouble() * 20000,
            current = random.NextDouble() * 200,
            status = $"s{random.Next(30)}",
        }))];
    }

    private static byte[] TrainActiveModel(FeatureSpec spec, ScoreFunction scoreFunction)
    {
        var csv = new StringBuilder("temperature,vibration,pressure,rpm,current,status\n");
        foreach (var e in SensorEvents(skip: 0, count: 4000, shift: false))
        {
            var root = JsonDocument.Parse(e).RootElement;
            csv.AppendJoin(',', s_spec.Features.Select(f => f.Kind == FeatureKind.Numeric
                ? root.GetProperty(f.Name).GetDouble().ToString("R", CultureInfo.InvariantCulture)
                : root.GetProperty(f.Name).GetString())).Append('\n');
        }
        var path = Path.Combine(Path.GetTempPath(), $"avae-retrain-{Guid.NewGuid():N}.csv");
        File.WriteAllText(path, csv.ToString());
        try
        {
            return Trainer.Train(path, spec, s_training with { Seed = 1, ScoreFunction = scoreFunction }).ToOnnx();
        }
        finally
        {
            File.Delete(path);
        }
    }

    private async Task InsertSampleAsync(string table, List<string> events, int firstSlot = 0, string detector = Detector)
    {
        await using var connection = await _dataSource.OpenConnectionAsync();
        await using var batch = new NpgsqlBatch(connection);
        string flagged = table == "recent_events" ? ", flagged" : "";
        string flaggedValue = table == "recent_events" ? ", false" : "";
        for (int i = 0; i < events.Count; i++)
        {
            batch.BatchCommands.Add(new NpgsqlBatchCommand(
                $"""INSERT INTO {table} (detector, slot, topic, partition, "offset", model_version, score{flagged}, event) VALUES ($1, $2, 'sensors', 0, $2, 'v-test', 0{flaggedValue}, $3::jsonb)""")
            {
                Parameters =
                {
                    new NpgsqlParameter<string> { TypedValue = detector },
                    new NpgsqlParameter<int> { TypedValue = firstSlot + i },
                    new NpgsqlParameter<string> { TypedValue = events[i] },
                },
            });
        }
        await batch.ExecuteNonQueryAsync();
    }

    private async Task InsertLabelledAsync(List<string> events, string label, long firstOffset)
    {
        await using var connection = await _dataSource.OpenConnectionAsync();
        for (int i = 0; i < events.Count; i++)
        {
            await using var command = new NpgsqlCommand(
                """
                WITH a AS (
                  INSERT INTO anomalies (detector, topic, "partition", "offset", score, p_value, threshold, model_version, contributions, event)
                  VALUES ($1, 'sensors', 0, $2, 30, 0.001, 20, 'v-test', '[]', $3::jsonb) RETURNING id)
                INSERT INTO anomaly_feedback (anomaly_id, label, source) SELECT id, $4, 'cli' FROM a
                """, connection);
            command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = Detector });
            command.Parameters.Add(new NpgsqlParameter<long> { TypedValue = firstOffset + i });
            command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = events[i] });
            command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = label });
            await command.ExecuteNonQueryAsync();
        }
    }

    private sealed record Run(string Decision, string Trigger, string? ActiveVersion, string? ChallengerVersion, string[] Reasons, JsonElement Metrics);

    private async Task<byte[]> ModelBytesAsync(string version)
    {
        await using var command = _dataSource.CreateCommand("SELECT onnx FROM models WHERE detector = $1 AND version = $2");
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = Detector });
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = version });
        return (byte[])(await command.ExecuteScalarAsync() ?? throw new InvalidOperationException($"no model {version}"));
    }

    private async Task<Run> LatestRunAsync()
    {
        await using var command = _dataSource.CreateCommand(
            "SELECT decision, trigger, active_version, challenger_version, reasons::text, metrics::text FROM retrain_runs ORDER BY id DESC LIMIT 1");
        await using var reader = await command.ExecuteReaderAsync();
        Assert.True(await reader.ReadAsync());
        return new Run(reader.GetString(0), reader.GetString(1), reader.IsDBNull(2) ? null : reader.GetString(2), reader.IsDBNull(3) ? null : reader.GetString(3),
            JsonSerializer.Deserialize<string[]>(reader.GetString(4))!, JsonDocument.Parse(reader.GetString(5)).RootElement.Clone());
    }

    private static CliResult Cli(int expectedExit, params string[] args) => CliProcess.Run(expectedExit, args);
}
