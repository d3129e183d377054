using System.Globalization;
using System.Text;
using AnomalyVae.Inference;
using AnomalyVae.Model;
using AnomalyVae.Retraining;
using AnomalyVae.Streaming;
using AnomalyVae.Training;
using AnomalyVae.Training.Engine;
using Microsoft.Extensions.Logging.Abstractions;

namespace AnomalyVae.UnitTests.Streaming;

/// <summary>
/// serve's windowed scoring without Kafka or PostgreSQL: the same events give the same scores through CSV scoring
/// and through <see cref="BatchScorer"/> whatever the micro-batch boundaries; the state per (partition, entity);
/// events without an entity; the packed state; model swaps; the memory cap.
/// </summary>
public sealed class WindowedScoringTests : IDisposable
{
    private const int Steps = 4;
    private static readonly string[] Status = ["low", "mid", "high"];
    private readonly string _directory = Directory.CreateTempSubdirectory("windowed-serve-").FullName;
    private readonly string _model;

    public WindowedScoringTests()
    {
        string train = WriteCsv("train.csv", Sequence(entities: 5, steps: 120, seed: 1));
        _model = Path.Combine(_directory, "windowed.onnx");
        Trainer.TrainWindowed(train, null, "machine", null, steps: Steps,
            new VaeTrainingOptions { Hidden = [16], Latent = 3, Epochs = 3, Threads = 1, Seed = 2 }).Save(_model);
    }

    [Fact]
    public void A_windowed_model_without_an_entity_field_stops_start_up_naming_the_field()
    {
        var options = new ServiceOptions();
        options.Detectors.Add(new DetectorOptions { Name = "w", Topic = "t", Model = _model });
        var error = Assert.Throws<ServiceConfigurationException>(() => Detector.LoadAll(options, NullLogger.Instance));
        Assert.Contains("windowed model (4 events per 'machine')", error.Message);
        Assert.Contains("Detectors:N:EntityField", error.Message);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(5)]
    [InlineData(64)]
    [InlineData(240)]
    public void Serve_scores_and_flags_each_event_like_csv_scoring_whatever_the_batch_size(int batchSize)
    {
        // Entities interleaved irregularly, some values missing (the CSV's row order is arrival order), and every
        // 7th reading hot: the events after it hold a flagged step, which the model's rule masks (FlaggedHistory).
        // Hot readings this close make some entity's event flagged by its whole window only (its masked score is
        // lower) with a later event of the entity in the same batch: that later window must not mask it.
        var events = Sequence(entities: 6, steps: 40, seed: 7, irregular: true);
        for (int i = 5; i < events.Count; i += 7)
            events[i] = events[i] with { Temperature = events[i].Temperature + 40 };
        using var bundle = ModelBundle.Load(_model);
        Assert.True(bundle.Window!.MaskFlaggedHistory);
        var table = FeatureTable.Load(WriteCsv("score.csv", events), bundle.Schema, bundle.Window.Columns);
        var expected = bundle.Score(table).Scores;
        double threshold = bundle.Calibration.Threshold;
        // The rule matters here: some event scores lower with its flagged history masked than with its whole window.
        var whole = bundle.Score(new FeatureWindows(table, bundle.Window with { MaskFlaggedHistory = false })).Scores;
        Assert.Contains(Enumerable.Range(0, events.Count), i => expected[i] < whole[i] && whole[i] > threshold);

        using var detector = Load(threshold);
        var (scores, flagged) = Stream(detector, events, batchSize, out _);

        Assert.Equal(events.Count, scores.Count);
        for (int i = 0; i < events.Count; i++)
        {
            Assert.True(Math.Abs(expected[i] - scores[i]) <= 1e-4 * Math.Max(1, Math.Abs(expected[i])), $"event {i}: CSV {expected[i]}, serve {scores[i]}");
            Assert.Equal(expected[i] > threshold, flagged[i]);
        }
        // The windows matter: a model fed each event alone would score differently.
        Assert.NotEqual(expected[^1], Stream(detector, events.TakeLast(1).ToList(), 1, out _).Scores[0]);
    }

    [Fact]
    public void A_sampled_events_stored_history_rebuilds_the_window_that_scored_it()
    {
        // Hot readings, so some windows hold flagged steps (recorded in the history and masked by the model's rule).
        var events = Sequence(entities: 4, steps: 30, seed: 11, irregular: true);
        for (int i = 6; i < events.Count; i += 13)
            events[i] = events[i] with { Temperature = events[i].Temperature + 40 };
        using var detector = Load(threshold: 1e30);
        var windows = new EntityWindows("w", "t", 1000, null, null, NullLogger.Instance);
        var scorer = new BatchScorer("w", "t", new ScoringOptions { BatchSize = 7 }, EveryEvent, windows);
        using var batch = new MicroBatch("w", "t", 7);
        batch.Bind(detector.AcquireCurrent()!);
        var now = DateTime.UtcNow;
        var rows = new List<SampleEvent>();
        var scores = new List<double>();
        var histories = new List<string>();
        for (int first = 0; first < events.Count; first += 7)
        {
            batch.Clear();
            for (int i = first; i < Math.Min(events.Count, first + 7); i++)
                batch.Add(0, i, Json(events[i]), now, now);
            scorer.Build(batch);
            var recent = batch.Record.Recent;
            for (int i = 0; i < recent.Count; i++)
            {
                histories.Add(recent.Histories[i]!);
                rows.Add(SampleEvent.From(recent.Payloads[i], recent.Histories[i]));
                scores.Add(recent.Scores[i]);
            }
            windows.Committed(batch.WindowSequence);
        }

        Assert.Equal(events.Count, rows.Count);
        // Each row keeps the entity's earlier events its window held: min(W − 1, events seen before) of them.
        var seen = new Dictionary<string, int>();
        for (int i = 0; i < events.Count; i++)
        {
            int before = seen.GetValueOrDefault(events[i].Machine);
            seen[events[i].Machine] = before + 1;
            Assert.Equal(Math.Min(Steps - 1, before), rows[i].History!.Count);
            Assert.Equal(rows[i].History!.Count, rows[i].HistoryFlagged!.Count);
        }
        Assert.Contains(rows, r => r.HistoryFlagged!.Contains(true));
        // Steps are event objects: numbers as values, categories by name, missing features absent.
        Assert.Contains(histories, h => h.Contains("\"status\":\"", StringComparison.Ordinal) && h.Contains("\"temperature\":", StringComparison.Ordinal));
        Assert.DoesNotContain(histories, h => h.Contains("machine", StringComparison.Ordinal) || h.Contains("null", StringComparison.Ordinal));

        // Retraining's windows of the rows score as serve scored them (the flagged-history rule included).
        using var bundle = ModelBundle.Load(_model);
        var decoded = RetrainingData.DecodeWindows(bundle.Schema, bundle.Window!, rows, maskFlagged: false);
        Assert.All(decoded.Decoded, Assert.True);
        var rebuilt = decoded.Score(bundle, [.. Enumerable.Range(0, rows.Count)], CancellationToken.None);
        for (int i = 0; i < rows.Count; i++)
            Assert.True(Math.Abs(rebuilt[i] - scores[i]) <= 1e-4 * Math.Max(1, Math.Abs(scores[i])), $"event {i}: serve {scores[i]}, rebuilt window {rebuilt[i]}");
        // Without its history (a row from before migration 0010) a row has no window to score.
        var bare = RetrainingData.DecodeWindows(bundle.Schema, bundle.Window!, [new SampleEvent(rows[^1].Event)], maskFlagged: false);
        Assert.False(bare.Decoded[0]);
    }

    [Fact]
    public void State_is_per_partition_and_entity_and_an_event_without_entity_is_a_dead_letter()
    {
        var events = Sequence(entities: 1, steps: 10, seed: 3);
        using var detector = Load(threshold: -1e30);
        var windows = new EntityWindows("w", "t", 1000, null, null, NullLogger.Instance);
        var scorer = new BatchScorer("w", "t", new ScoringOptions { BatchSize = 32 }, NoSamples, windows);
        using var batch = new MicroBatch("w", "t", 32);
        batch.Bind(detector.AcquireCurrent()!);
        var now = DateTime.UtcNow;
        // The same entity's sequence in partitions 0 and 1, interleaved, and one event without the entity field.
        for (int i = 0; i < events.Count; i++)
        {
            batch.Add(0, i, Json(events[i]), now, now);
            batch.Add(1, i, Json(events[i]), now, now);
        }
        batch.Add(0, 10, Encoding.UTF8.GetBytes("""{"load":50,"temperature":35,"status":"mid"}"""), now, now);
        scorer.Build(batch);

        var letter = Assert.Single(batch.DeadLetters);
        Assert.Equal((BatchScorer.MissingEntity, 0, 10L), (letter.Reason, letter.Partition, letter.Offset));
        Assert.Contains("'machine'", letter.Message);
        // Partition 1 sees only its own events: each event scores as its twin in partition 0.
        var record = batch.Record;
        for (int i = 0; i < events.Count; i++)
            Assert.Equal(record.Scores[2 * i], record.Scores[(2 * i) + 1]);
        Assert.Equal(2, windows.Count);
        Assert.Equal(2, record.WindowState.Count);
        Assert.Equal([0, 1], record.WindowState.Partitions.Order());
        Assert.All(record.WindowState.LastOffsets, o => Assert.Equal(9L, o));
    }

    [Fact]
    public void The_packed_state_restores_the_same_history_and_flags()
    {
        var history = new EntityHistory(3, "m7", capacity: 3, features: 2);
        for (int i = 0; i < 5; i++)
        {
            long appended = history.Append([i, 10 + i], [1, i % 2], offset: 100 + i);
            history.SetFlag(appended, i == 3);
        }
        var packed = new byte[history.PackedLength];
        history.Pack(packed);

        var restored = new EntityHistory(3, "m7", capacity: 3, features: 2);
        restored.Unpack(packed, 104);
        Assert.Equal((3, 104L), (restored.Count, restored.LastOffset));
        for (int back = 1; back <= 3; back++)
        {
            history.Step(back, out var v, out var m);
            restored.Step(back, out var rv, out var rm);
            Assert.Equal(v.ToArray(), rv.ToArray());
            Assert.Equal(m.ToArray(), rm.ToArray());
            Assert.Equal(history.Flagged(back), restored.Flagged(back));
        }
        Assert.True(restored.Flagged(2)); // the event at offset 103
        // A smaller window keeps the newest steps.
        var small = new EntityHistory(3, "m7", capacity: 2, features: 2);
        small.Unpack(packed, 104);
        small.Step(1, out var newest, out _);
        Assert.Equal([4f, 14f], newest.ToArray());
        Assert.Throws<FormatException>(() => new EntityHistory(3, "m7", 3, features: 3).Unpack(packed, 104));
    }

    [Fact]
    public void A_swap_keeps_the_state_for_the_same_features_and_resets_it_for_others()
    {
        using var bundle = ModelBundle.Load(_model);
        var windows = new EntityWindows("w", "t", 1000, null, null, NullLogger.Instance);
        long first = windows.BeginBatch(bundle.Schema, bundle.Window!);
        var payload = Json(Sequence(1, 1, 1)[0]);
        var decoder = new AnomalyVae.Events.EventDecoder(bundle.Schema, "machine", null);
        var x = new float[bundle.Schema.Count];
        var m = new float[bundle.Schema.Count];
        var decoded = decoder.Decode(payload, x, m);
        windows.Find(0, decoded.Entity, payload, first).Append(x, m, 0);
        Assert.Equal(1, windows.Count);

        // Another W, same features (a retrained model): kept.
        var window = bundle.Window!;
        windows.BeginBatch(bundle.Schema, window with { Steps = 6 });
        Assert.Equal(1, windows.Count);
        Assert.Equal(5, windows.Find(0, decoded.Entity, payload, 3).Capacity);
        // Another vocabulary: the stored steps would mean other categories, so the state starts over.
        var other = new FeatureSchema(bundle.Schema.Features.Select(f => f.Kind == FeatureKind.Categorical
            ? FittedFeature.Categorical(f.Name, ["low", "mid", "high", "very high"]) : f));
        Assert.NotEqual(EntityWindows.Fingerprint(bundle.Schema), EntityWindows.Fingerprint(other));
        windows.BeginBatch(other, window);
        Assert.Equal(0, windows.Count);
    }

    [Fact]
    public void After_a_swap_to_another_window_of_the_same_features_the_kept_history_scores_like_csv()
    {
        // A second model of the same features with W = 3: the swap keeps each entity's newest 2 events, so the first
        // events after it already have full windows, as CSV scoring of the whole sequence with that model gives.
        string shorter = Path.Combine(_directory, "shorter.onnx");
        Trainer.TrainWindowed(Path.Combine(_directory, "train.csv"), null, "machine", null, steps: 3,
            new VaeTrainingOptions { Hidden = [16], Latent = 3, Epochs = 2, Threads = 1, Seed = 3 }).Save(shorter);
        var events = Sequence(entities: 3, steps: 20, seed: 11);
        using var bundle = ModelBundle.Load(shorter);
        var expected = bundle.Score(FeatureTable.Load(WriteCsv("swap.csv", events), bundle.Schema, bundle.Window!.Columns)).Scores;

        // Nothing flagged (so the flagged-history rule stays out of it); the recent-events sample carries every score.
        using var before = Load(threshold: 1e30);
        var options = new ServiceOptions();
        options.Detectors.Add(new DetectorOptions { Name = "w", Topic = "t", Model = shorter, EntityField = "machine", Threshold = 1e30 });
        using var after = Assert.Single(Detector.LoadAll(options, NullLogger.Instance));
        var windows = new EntityWindows("w", "t", 1000, null, null, NullLogger.Instance);
        var scorer = new BatchScorer("w", "t", new ScoringOptions { BatchSize = 30 }, EveryEvent, windows);
        var scores = new List<double>();
        var now = DateTime.UtcNow;
        foreach (var (detector, first) in new[] { (before, 0), (after, 30) })
        {
            using var batch = new MicroBatch("w", "t", 30);
            batch.Bind(detector.AcquireCurrent()!);
            for (int i = first; i < first + 30; i++)
                batch.Add(0, i, Json(events[i]), now, now);
            scorer.Build(batch);
            scores.AddRange(batch.Record.Recent.Scores);
            windows.Committed(batch.WindowSequence);
        }
        for (int i = 30; i < 60; i++)
            Assert.True(Math.Abs(expected[i] - scores[i]) <= 1e-4 * Math.Max(1, Math.Abs(expected[i])), $"event {i}: CSV {expected[i]}, serve {scores[i]}");
    }

    [Fact]
    public void Memory_holds_at_most_the_cap_of_committed_entities()
    {
        using var detector = Load(threshold: 1e30);
        var windows = new EntityWindows("w", "t", maxEntities: 100, null, null, NullLogger.Instance);
        var scorer = new BatchScorer("w", "t", new ScoringOptions { BatchSize = 50 }, NoSamples, windows);
        using var batch = new MicroBatch("w", "t", 50);
        batch.Bind(detector.AcquireCurrent()!);
        var now = DateTime.UtcNow;
        int peak = 0;
        for (int b = 0; b < 20; b++)
        {
            batch.Clear();
            for (int i = 0; i < 50; i++)
                batch.Add(0, (b * 50) + i, Json(($"e{(b * 50) + i}", 50, 35, "mid")), now, now);
            scorer.Build(batch);
            windows.Committed(batch.WindowSequence);
            peak = Math.Max(peak, windows.Count);
        }
        // Evicted down to 90 % of the cap at the start of a batch, then at most one batch of new entities on top.
        Assert.InRange(peak, 100, 150);
        Assert.True(windows.Evicted >= 1000 - 150);
    }

    [Fact]
    public void Scoring_a_windowed_batch_of_known_entities_allocates_nothing()
    {
        using var detector = Load(threshold: 1e30);
        var windows = new EntityWindows("w", "t", 1000, null, null, NullLogger.Instance);
        var scorer = new BatchScorer("w", "t", new ScoringOptions { BatchSize = 256 }, NoSamples, windows);
        using var batch = new MicroBatch("w", "t", 256);
        batch.Bind(detector.AcquireCurrent()!);
        var payloads = Sequence(entities: 8, steps: 32, seed: 5).Select(Json).ToArray();
        var now = DateTime.UtcNow;
        long offset = 0;
        void Run()
        {
            batch.Clear();
            for (int i = 0; i < payloads.Length; i++)
                batch.Add(i % 2, offset++, payloads[i], now, now);
            scorer.Build(batch);
            windows.Committed(batch.WindowSequence);
        }
        Run();
        Assert.Equal(256, batch.Rows);
        Assert.Equal(8, batch.Record.WindowState.Count); // entity m(i % 8) always lands in partition i % 2
        Assert.Equal(0, Allocations.Fewest(() =>
        {
            for (int round = 0; round < 10; round++)
                Run();
        }));
    }

    private static readonly RetrainingOptions NoSamples = new() { SampleSize = 0, RecentSize = 0 };

    // The recent-events sample at rate 1 carries every scored event's score and flag.
    private static readonly RetrainingOptions EveryEvent = new() { SampleSize = 0, RecentSize = 1_000_000, RecentRate = 1 };

    private Detector Load(double threshold)
    {
        var options = new ServiceOptions();
        options.Detectors.Add(new DetectorOptions { Name = "w", Topic = "t", Model = _model, EntityField = "machine", Threshold = threshold });
        return Assert.Single(Detector.LoadAll(options, NullLogger.Instance));
    }

    /// <summary>Streams <paramref name="events"/> (one partition) through a scorer in batches of <paramref name="batchSize"/>; every score and flag, in order.</summary>
    private static (List<double> Scores, List<bool> Flagged) Stream(Detector detector, List<(string Machine, double Load, double Temperature, string Status)> events,
        int batchSize, out EntityWindows windows)
    {
        windows = new EntityWindows("w", "t", 1000, null, null, NullLogger.Instance);
        var scorer = new BatchScorer("w", "t", new ScoringOptions { BatchSize = batchSize }, EveryEvent, windows);
        using var batch = new MicroBatch("w", "t", batchSize);
        batch.Bind(detector.AcquireCurrent()!);
        var scores = new List<double>();
        var flagged = new List<bool>();
        var now = DateTime.UtcNow;
        for (int first = 0; first < events.Count; first += batchSize)
        {
            batch.Clear();
            for (int i = first; i < Math.Min(events.Count, first + batchSize); i++)
                batch.Add(0, i, Json(events[i]), now, now);
            scorer.Build(batch);
            Assert.Empty(batch.DeadLetters);
            Assert.Equal(Enumerable.Range(first, batch.Rows).Select(i => (long)i), batch.Record.Recent.Offsets);
            scores.AddRange(batch.Record.Recent.Scores);
            flagged.AddRange(batch.Record.Recent.Flagged);
            windows.Committed(batch.WindowSequence);
        }
        return (scores, flagged);
    }

    private static byte[] Json((string Machine, double Load, double Temperature, string Status) e) => Encoding.UTF8.GetBytes(string.Create(
        CultureInfo.InvariantCulture,
        $$"""{"machine":"{{e.Machine}}","load":{{(double.IsNaN(e.Load) ? "null" : e.Load.ToString("R", CultureInfo.InvariantCulture))}},"temperature":{{e.Temperature:R}},"status":"{{e.Status}}"}"""));

    private string WriteCsv(string name, List<(string Machine, double Load, double Temperature, string Status)> events)
    {
        var text = new StringBuilder("machine,load,temperature,status\n");
        foreach (var e in events)
            text.Append(CultureInfo.InvariantCulture, $"{e.Machine},{(double.IsNaN(e.Load) ? "" : e.Load.ToString("R", CultureInfo.InvariantCulture))},{e.Temperature:R},{e.Status}\n");
        string path = Path.Combine(_directory, name);
        File.WriteAllText(path, text.ToString());
        return path;
    }

    /// <summary>A fleet's readings in arrival order: a daily load cycle per machine, temperature following the load.</summary>
    private static List<(string Machine, double Load, double Temperature, string Status)> Sequence(int entities, int steps, int seed, bool irregular = false)
    {
        var random = new Random(seed);
        var order = new List<(int Entity, int Step)>();
        for (int t = 0; t < steps; t++)
        {
            for (int e = 0; e < entities; e++)
                order.Add((e, t));
        }
        if (irregular)
        {
            // Shuffle within blocks of 3 steps: entities interleave differently, each one's own order kept.
            order = [.. order.Select((o, i) => (o, key: (o.Step / 3 * 1000) + random.Next(1000))).OrderBy(p => p.key).ThenBy(p => p.o.Step).Select(p => p.o)];
        }
        var result = new List<(string, double, double, string)>();
        foreach (var (e, t) in order)
        {
            double load = 50 + (30 * Math.Sin(2 * Math.PI * (t + (7 * e)) / 24)) + (random.NextDouble() * 3);
            double temperature = 20 + (0.3 * load) + random.NextDouble();
            string status = Status[load > 70 ? 2 : load < 30 ? 0 : 1];
            result.Add(($"m{e}", irregular && random.NextDouble() < 0.05 ? double.NaN : load, temperature, status));
        }
        return result;
    }

    public void Dispose() => Directory.Delete(_directory, recursive: true);
}
