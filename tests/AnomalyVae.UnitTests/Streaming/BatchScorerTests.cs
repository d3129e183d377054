using System.Globalization;
using System.Text;
using AnomalyVae.Model;
using AnomalyVae.Retraining;
using AnomalyVae.Streaming;
using AnomalyVae.Training;
using AnomalyVae.Training.Engine;
using Microsoft.Extensions.Logging.Abstractions;

namespace AnomalyVae.UnitTests.Streaming;

/// <summary>The pipeline's pure stage (decode → score → decide), with no Kafka and no database.</summary>
public sealed class BatchScorerTests : IDisposable
{
    private readonly string _directory = Path.Combine(Path.GetTempPath(), $"batch-scorer-{Guid.NewGuid():N}");
    private readonly Detector _detector;

    public BatchScorerTests()
    {
        Directory.CreateDirectory(_directory);
        var csv = new StringBuilder("id,a,b\n");
        var random = new Random(3);
        for (int i = 0; i < 600; i++)
        {
            double a = random.NextDouble() * 2 - 1;
            csv.Append(CultureInfo.InvariantCulture, $"m{i % 5},{a:R},{(2 * a) + (0.05 * (random.NextDouble() - 0.5)):R}\n");
        }
        File.WriteAllText(Path.Combine(_directory, "train.csv"), csv.ToString());
        var spec = FeatureSpec.Parse("""{"features":[{"name":"a","kind":"numeric"},{"name":"b","kind":"numeric"}],"ignore":["id"]}""");
        var model = Path.Combine(_directory, "model.onnx");
        Trainer.Train(Path.Combine(_directory, "train.csv"), spec,
            new VaeTrainingOptions { Hidden = [8], Latent = 2, Epochs = 3, Threads = 1, Seed = 1 }).Save(model);
        var options = new ServiceOptions();
        options.Detectors.Add(new DetectorOptions { Name = "d", Topic = "t", Model = model, EntityField = "id" });
        _detector = Assert.Single(Detector.LoadAll(options, NullLogger.Instance));
    }

    [Fact]
    public void A_batch_is_decoded_scored_and_decided_like_direct_scoring()
    {
        var scoring = new ScoringOptions { BatchSize = 16 };
        var scorer = new BatchScorer("d", "t", scoring, new RetrainingOptions { SampleSize = 0, RecentSize = 0 });
        using var batch = new MicroBatch("d", "t", 16);
        batch.Bind(_detector.AcquireCurrent()!);
        string[] payloads =
        [
            """{"id":"m1","a":0.5,"b":1.0}""",
            """{"id":"m2","a":0.5,"b":-9.0}""", // breaks b = 2a: an anomaly
            "not json",
            """{"id":"m3","a":-0.25,"b":-0.5}""",
        ];
        var now = new DateTime(2026, 12, 5, 0, 0, 0, DateTimeKind.Utc);
        for (int i = 0; i < payloads.Length; i++)
            batch.Add(partition: i % 2, offset: 100 + i, Encoding.UTF8.GetBytes(payloads[i]), now, now);

        scorer.Build(batch);

        Assert.True(batch.Built);
        Assert.Equal(3, batch.Rows);
        var letter = Assert.Single(batch.DeadLetters);
        Assert.Equal(102, letter.Offset);
        Assert.Equal(3, batch.Record.EventsScored);
        Assert.Equal(1, batch.Record.EventsDeadLettered);
        Assert.Equal([0, 1], batch.Record.OffsetPartitions.Order());
        Assert.Equal(104, batch.Record.NextOffsets.Max());

        // The same rows scored directly through the bundle flag the same events with the same scores.
        var bundle = batch.Model.Bundle;
        var table = new FeatureTable(bundle.Schema, [0.5f, 1.0f, 0.5f, -9.0f, -0.25f, -0.5f], [1f, 1f, 1f, 1f, 1f, 1f]);
        var direct = bundle.Score(table);
        var expected = Enumerable.Range(0, 3).Where(r => direct.Scores[r] > batch.Model.Threshold).ToList();
        Assert.Contains(1, expected);
        Assert.Equal(expected.Select(r => (long)(r == 0 ? 100 : r == 1 ? 101 : 103)), batch.Record.Offsets);
        Assert.Equal(expected.Select(r => (double)direct.Scores[r]), batch.Record.Scores);
        Assert.Contains("m2", batch.Record.Entities);

        // A second Build of the same batch changes nothing (a retried commit writes the same rows).
        var scores = batch.Record.Scores.ToArray();
        scorer.Build(batch);
        Assert.Equal(scores, batch.Record.Scores);
    }

    [Fact]
    public void Decoding_scoring_and_deciding_a_batch_of_normal_events_allocates_nothing()
    {
        var scorer = new BatchScorer("d", "t", new ScoringOptions { BatchSize = 256 }, new RetrainingOptions { SampleSize = 0, RecentSize = 0 });
        using var batch = new MicroBatch("d", "t", 256);
        var model = _detector.AcquireCurrent()!;
        batch.Bind(model);
        var payloads = Enumerable.Range(0, 256)
            .Select(i => Encoding.UTF8.GetBytes(string.Create(CultureInfo.InvariantCulture, $$"""{"id":"m{{i % 5}}","a":{{(i % 10) / 10.0}},"b":{{(i % 10) / 5.0}}}""")))
            .ToArray();
        var now = DateTime.UtcNow;
        void Run()
        {
            batch.Clear();
            for (int i = 0; i < payloads.Length; i++)
                batch.Add(i % 4, i, payloads[i], now, now);
            scorer.Build(batch);
        }
        Run();
        Assert.Equal(256, batch.Rows);
        // Only if nothing is flagged is nothing allocated: flagged rows become strings for the database.
        Assert.Empty(batch.Record.Scores);

        Assert.Equal(0, Allocations.Fewest(() =>
        {
            for (int round = 0; round < 20; round++)
                Run();
        }));
    }

    public void Dispose()
    {
        _detector.Dispose();
        Directory.Delete(_directory, recursive: true);
    }
}
