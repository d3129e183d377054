using System.Buffers;
using System.Text;
using System.Text.Json;
using AnomalyVae.Events;
using AnomalyVae.Inference;
using AnomalyVae.Model;
using AnomalyVae.Retraining;

namespace AnomalyVae.Streaming;

/// <summary>
/// The pure part of a detector's pipeline: decode a consumed batch into the scorer's rows (bad events become dead
/// letters) → one ONNX Runtime run → flag scores above the threshold, draw the retraining samples, and fill the
/// record that the committer writes. No Kafka, no database. One per detector; batches go through it one at a time.
/// </summary>
public sealed class BatchScorer(string detector, string topic, ScoringOptions scoring, RetrainingOptions retraining)
{
    private ScoreWindow _window = new(scoring.StatsWindowSeconds);
    // The version the window's statistics belong to.
    private string? _windowVersion;
    // Retraining-sample admissions and reservoir draws, drawn here so a retried commit writes the same rows. Seeded
    // from the detector's name: reproducible, and independent of the scores.
    private readonly Random _sampling = new(StableSeed(detector));
    // Score-bin edges of the calibration they were computed from (recomputed only when the model changes).
    private double[] _binEdges = [];
    private Calibration? _binEdgesOf;
    // Contribution ordering scratch, sized to the model's feature count (resized only when a swap changes it).
    private int[] _order = [];
    private float[] _keys = [];
    private readonly ArrayBufferWriter<byte> _json = new(4096);

    /// <summary>Decodes, scores and decides <paramref name="batch"/> (once; a second call does nothing).</summary>
    public void Build(MicroBatch batch)
    {
        if (batch.Built)
            return;
        batch.EndConsume();
        using var span = batch.StartStage("score");
        long start = ThreadCpu.Now();
        Decode(batch);
        long decoded = ThreadCpu.Now();
        if (batch.Rows > 0)
            batch.Scorer.Run(batch.Rows);
        long scored = ThreadCpu.Now();
        Decide(batch);
        long decided = ThreadCpu.Now();
        batch.DecodeSeconds = ThreadCpu.Seconds(decoded - start);
        batch.ScoreSeconds = ThreadCpu.Seconds(scored - decoded);
        batch.DecideSeconds = ThreadCpu.Seconds(decided - scored);
        batch.Built = true;
        span?.SetTag("anomalyvae.events", batch.Count);
        span?.SetTag("anomalyvae.flagged", batch.Record.Events.Count);
        span?.SetTag("anomalyvae.dead_letters", batch.DeadLetters.Count);
    }

    private void Decode(MicroBatch batch)
    {
        var decoder = batch.Model.Decoder;
        var x = batch.Scorer.X;
        var mask = batch.Scorer.Mask;
        int features = batch.Scorer.Bundle.Schema.Count;
        int rows = 0;
        for (int i = 0; i < batch.Count; i++)
        {
            ref var pending = ref batch.Events[i];
            var decoded = decoder.Decode(pending.Payload, x.Slice(rows * features, features), mask.Slice(rows * features, features));
            if (decoded.IsSuccess)
            {
                pending.Row = rows++;
                pending.Entity = decoded.Entity;
                pending.EventTime = decoded.EventTime;
            }
            else
            {
                pending.Row = -1;
                batch.DeadLetters.Add(DeadLetter.ForDecodeFailure(decoded, detector, topic, pending.Partition, pending.Offset,
                    pending.ReceivedAt, pending.Payload));
            }
        }
        batch.Rows = rows;
    }

    private void Decide(MicroBatch batch)
    {
        var scores = batch.Rows > 0 ? batch.Scorer.Scores(batch.Rows) : default;
        var featureScores = batch.Rows > 0 ? batch.Scorer.FeatureScores(batch.Rows) : default;
        var record = batch.Record;
        record.Clear();
        if (batch.Model.Version != _windowVersion)
        {
            // Statistics rows are per model version: a new version's window starts without the old version's scores.
            _window = new ScoreWindow(scoring.StatsWindowSeconds);
            _windowVersion = batch.Model.Version;
        }
        _window.Advance(DateTime.UtcNow);
        for (int r = 0; r < batch.Rows; r++)
            _window.Add(scores[r]);
        record.WindowStart = _window.Start;
        record.WindowSeconds = _window.WindowSeconds;
        record.EventsScored = batch.Rows;
        record.EventsDeadLettered = batch.DeadLetters.Count;
        record.Quantiles = batch.Rows > 0 ? _window.Quantiles() : null;
        record.TrainingSampleSize = retraining.SampleSize;
        record.RecentSize = retraining.RecentSize;
        var edges = BinEdges(batch.Model.Bundle.Calibration);
        // Size 0 turns a sample off: its rate then admits nothing.
        double recentRate = retraining.RecentSize > 0 ? retraining.RecentRate : 0;
        double sampleRate = retraining.SampleSize > 0 ? retraining.SampleRate : 0;
        int features = batch.Scorer.Bundle.Schema.Count;
        double threshold = batch.Model.Threshold;
        var calibration = batch.Model.Bundle.Calibration;
        for (int i = 0; i < batch.Count; i++)
        {
            ref readonly var pending = ref batch.Events[i];
            if (pending.Row < 0)
                continue;
            double score = scores[pending.Row];
            if (double.IsNaN(score))
                continue;
            record.ScoreBins[ScoreDrift.BinOf(edges, score)]++;
            if (pending.EventTime is { } eventTime)
                record.AdvanceClock(pending.Partition, eventTime.UtcDateTime);
            bool flagged = score > threshold;
            // One draw per scored event decides both samples (no allocation unless admitted): [0, recentRate) →
            // recent events; [recentRate, recentRate + sampleRate) and scored as normal → training sample.
            double u = _sampling.NextDouble();
            if (u < recentRate)
                record.Recent.Add(pending.Partition, pending.Offset, pending.EventTime?.UtcDateTime,
                    double.IsFinite(score) ? score : float.MaxValue, flagged, pending.Payload, 0);
            else if (!flagged && double.IsFinite(score) && u < recentRate + sampleRate)
                record.Training.Add(pending.Partition, pending.Offset, pending.EventTime?.UtcDateTime, score, false, pending.Payload,
                    _sampling.NextDouble());
            if (!flagged)
                continue;
            record.Partitions.Add(pending.Partition);
            record.Offsets.Add(pending.Offset);
            record.Entities.Add(pending.Entity.GetString(pending.Payload));
            record.EventTimes.Add(pending.EventTime?.UtcDateTime);
            // The table keeps only finite scores; +inf (possible in float32) is stored as the largest float.
            record.Scores.Add(double.IsFinite(score) ? score : float.MaxValue);
            record.PValues.Add(calibration.PValue(score));
            record.Contributions.Add(Contributions(batch.Scorer, featureScores.Slice(pending.Row * features, features)));
            record.Events.Add(EventJson.ForJsonb(pending.Payload));
            batch.FlaggedPayloads.Add(pending.Payload);
        }
        foreach (var (partition, next) in batch.NextOffsets)
        {
            record.OffsetPartitions.Add(partition);
            record.NextOffsets.Add(next);
        }
    }

    private double[] BinEdges(Calibration calibration)
    {
        if (!ReferenceEquals(calibration, _binEdgesOf))
        {
            _binEdges = ScoreDrift.Edges(calibration);
            _binEdgesOf = calibration;
        }
        return _binEdges;
    }

    /// <summary>FNV-1a of the detector's name: a seed that is the same in every process (string hashes are not).</summary>
    private static int StableSeed(string name)
    {
        uint hash = 2166136261;
        foreach (char c in name)
            hash = (hash ^ c) * 16777619;
        return (int)hash;
    }

    /// <summary>[{"feature": name, "score": s}, ...], largest first.</summary>
    private string Contributions(ModelScorer scorer, ReadOnlySpan<float> featureScores)
    {
        var names = scorer.Bundle.Schema.Features;
        if (_order.Length != featureScores.Length)
        {
            // First use, or a new model version with another feature count.
            _order = new int[featureScores.Length];
            _keys = new float[featureScores.Length];
        }
        for (int j = 0; j < _order.Length; j++)
        {
            _order[j] = j;
            // NaN last: sort as -inf.
            _keys[j] = float.IsNaN(featureScores[j]) ? float.NegativeInfinity : -featureScores[j];
        }
        Array.Sort(_keys, _order);
        _json.ResetWrittenCount();
        using (var writer = new Utf8JsonWriter(_json))
        {
            writer.WriteStartArray();
            foreach (int j in _order)
            {
                writer.WriteStartObject();
                writer.WriteString("feature", names[j].Name);
                float value = featureScores[j];
                if (float.IsFinite(value))
                    writer.WriteNumber("score", value);
                else
                    writer.WriteNull("score");
                writer.WriteEndObject();
            }
            writer.WriteEndArray();
        }
        return Encoding.UTF8.GetString(_json.WrittenSpan);
    }
}
