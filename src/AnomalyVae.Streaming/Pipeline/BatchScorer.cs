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
/// record that the committer writes. No Kafka, no database (a windowed model's <see cref="EntityWindows"/> reads
/// stored state on a miss). One per detector; batches go through it one at a time.
/// </summary>
public sealed class BatchScorer(string detector, string topic, ScoringOptions scoring, RetrainingOptions retraining, EntityWindows? windows = null)
{
    /// <summary>Dead-letter reason of an event without an entity when the detector's model is windowed.</summary>
    public const string MissingEntity = "missing_entity";

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
    // Windowed models, per scorer row: the entity's history, the row's offset and its append number (−1: a replay
    // of an event the stored state already holds, not appended again). Sized to the batch capacity once.
    private EntityHistory[] _histories = [];
    private long[] _rowOffsets = [];
    private long[] _appended = [];
    // Windowed models, per scorer row: how many history steps its window held (the entity's earlier events, ≤ W−1),
    // so an admitted sample row keeps exactly those (HistoryJson).
    private int[] _held = [];
    // Windowed models that mask flagged history (FlaggedHistory), per scorer row: the previous appended row of its
    // entity in this batch (−1: none), its history's flags (W−1 per row, oldest first), its wave, its final flag; the
    // final scores and feature scores (filled from the scorer's at the batch's first rescore: _rescored); rows ordered by
    // wave. Sized once per batch capacity and window.
    private int[] _previousRow = [];
    private bool[] _historyFlags = [];
    private int[] _wave = [];
    private bool[] _flagged = [];
    private int[] _byWave = [];
    private int[] _waveStart = [];
    private int[] _affected = [];
    private float[] _finalScores = [];
    private float[] _finalFeatureScores = [];
    private bool _rescored;

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
        _rescored = false;
        if (batch.Rows > 0)
        {
            batch.Scorer.Run(batch.Rows);
            if (batch.Model.Bundle.Window is { MaskFlaggedHistory: true } window)
                RescoreFlaggedHistory(batch, window);
        }
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
        if (batch.Model.Bundle.Window is { } window)
        {
            DecodeWindowed(batch, window);
            return;
        }
        windows?.Suspend();
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

    /// <summary>
    /// Decodes each event into the last step of its row's window, then fills the earlier steps from its entity's
    /// history in arrival order and appends the event to it: an entity seen several times in one batch has its
    /// later events see its earlier ones, so a score never depends on where batches begin and end.
    /// </summary>
    private void DecodeWindowed(MicroBatch batch, WindowDefinition window)
    {
        var state = windows ?? throw new InvalidOperationException($"Detector '{detector}' has a windowed model but keeps no window state.");
        var decoder = batch.Model.Decoder;
        var schema = batch.Scorer.Bundle.Schema;
        int f = schema.Count, w = window.Steps, width = w * f, last = (w - 1) * f;
        var x = batch.Scorer.X;
        var mask = batch.Scorer.Mask;
        long sequence = state.BeginBatch(schema, window);
        batch.WindowSequence = sequence;
        if (_histories.Length < batch.Capacity)
        {
            _histories = new EntityHistory[batch.Capacity];
            _rowOffsets = new long[batch.Capacity];
            _appended = new long[batch.Capacity];
            _held = new int[batch.Capacity];
        }
        bool rule = window.MaskFlaggedHistory;
        if (rule && (_previousRow.Length < batch.Capacity || _historyFlags.Length != batch.Capacity * (w - 1)))
        {
            _previousRow = new int[batch.Capacity];
            _historyFlags = new bool[batch.Capacity * (w - 1)];
            _wave = new int[batch.Capacity];
            _flagged = new bool[batch.Capacity];
            _byWave = new int[batch.Capacity];
            _waveStart = new int[batch.Capacity + 2];
            _affected = new int[batch.Capacity];
        }
        int rows = 0;
        for (int i = 0; i < batch.Count; i++)
        {
            ref var pending = ref batch.Events[i];
            pending.Row = -1;
            var decoded = decoder.Decode(pending.Payload, x.Slice(rows * width + last, f), mask.Slice(rows * width + last, f));
            if (!decoded.IsSuccess)
            {
                batch.DeadLetters.Add(DeadLetter.ForDecodeFailure(decoded, detector, topic, pending.Partition, pending.Offset,
                    pending.ReceivedAt, pending.Payload));
                continue;
            }
            if (!decoded.Entity.IsPresent)
            {
                batch.DeadLetters.Add(new DeadLetter(MissingEntity,
                    $"the event has no entity (field '{window.EntityField}' absent, null or empty); the detector's model scores each event in a window of its entity's last {w} events",
                    detector, topic, pending.Partition, pending.Offset, pending.ReceivedAt, pending.Payload));
                continue;
            }
            _histories[rows] = state.Find(pending.Partition, decoded.Entity, pending.Payload, sequence);
            _rowOffsets[rows] = pending.Offset;
            pending.Row = rows++;
            pending.Entity = decoded.Entity;
            pending.EventTime = decoded.EventTime;
        }
        batch.Rows = rows;
        state.ReadMisses();
        for (int r = 0; r < rows; r++)
        {
            var history = _histories[r];
            var row = x.Slice(r * width, width);
            var rowMask = mask.Slice(r * width, width);
            var steps = new HistorySteps(history, row[last..], rowMask[last..]);
            WindowAssembly.Fill(ref steps, w, f, row, rowMask);
            bool append = _rowOffsets[r] > history.LastOffset;
            _held[r] = Math.Min(history.Count, w - 1);
            if (rule)
                NoteHistory(r, history, w - 1, append, sequence);
            // An offset the state already holds is a replay after another owner's commit landed late: scored, not appended twice.
            _appended[r] = append ? history.Append(row[last..], rowMask[last..], _rowOffsets[r]) : -1;
        }
    }

    /// <summary>
    /// Before row <paramref name="r"/>'s event is appended: its history's flags as the state holds them (those of
    /// earlier events of this batch are not final yet: the waves fill them in) and its entity's previous row here.
    /// A replay (not appended) keeps its whole-window score: its row is fenced off at commit anyway.
    /// </summary>
    private void NoteHistory(int r, EntityHistory history, int h, bool append, long sequence)
    {
        var flags = _historyFlags.AsSpan(r * h, h);
        flags.Clear();
        _previousRow[r] = -1;
        if (!append)
            return;
        for (int back = 1; back <= Math.Min(history.Count, h); back++)
            flags[h - back] = history.Flagged(back);
        if (history.LastRowIn == sequence)
            _previousRow[r] = history.LastRow;
        history.LastRow = r;
        history.LastRowIn = sequence;
    }

    /// <summary>
    /// <see cref="WindowDefinition.MaskFlaggedHistory"/>, exactly as CSV scoring applies it
    /// (<see cref="ModelBundle"/>.Score over <see cref="FeatureWindows"/>): rows go in waves by per-entity occurrence
    /// in the batch, so each sees its predecessors' final flags; a row whose history holds flagged steps is scored
    /// again with them masked (<see cref="FlaggedHistory"/>) and keeps the lower score. Only those rows run again.
    /// </summary>
    private void RescoreFlaggedHistory(MicroBatch batch, WindowDefinition window)
    {
        int rows = batch.Rows, f = batch.Scorer.Bundle.Schema.Count, h = window.Steps - 1, width = window.Steps * f;
        // The whole-window scores, read in the scorer's buffers (the rescorer is another scorer: they stay valid) until
        // a row is rescored; only then are they copied (most batches have no flagged history).
        var whole = batch.Scorer.Scores(rows);
        // The model's calibrated threshold, not a detector's override: "flagged history" is the model's own rule, so CSV
        // scoring and serve mask the same steps whatever threshold a detector flags with.
        double threshold = batch.Model.Bundle.Calibration.Threshold;

        // Rows by wave (counting sort; a row's previous row is always earlier, so its wave is known).
        int waves = 0;
        for (int r = 0; r < rows; r++)
        {
            _wave[r] = _previousRow[r] < 0 ? 0 : _wave[_previousRow[r]] + 1;
            waves = Math.Max(waves, _wave[r] + 1);
        }
        Array.Clear(_waveStart, 0, waves + 1);
        for (int r = 0; r < rows; r++)
            _waveStart[_wave[r] + 1]++;
        for (int k = 0; k < waves; k++)
            _waveStart[k + 1] += _waveStart[k];
        for (int r = 0; r < rows; r++)
            _byWave[_waveStart[_wave[r]]++] = r;
        for (int k = waves; k > 0; k--)
            _waveStart[k] = _waveStart[k - 1];
        _waveStart[0] = 0;

        var rescorer = batch.Rescorer;
        for (int k = 0; k < waves; k++)
        {
            int n = 0;
            for (int i = _waveStart[k]; i < _waveStart[k + 1]; i++)
            {
                int r = _byWave[i], previous = _previousRow[r];
                var flags = _historyFlags.AsSpan(r * h, h);
                if (previous >= 0)
                {
                    // The previous row's history shifted by one, then the previous row itself (its flag is final).
                    _historyFlags.AsSpan((previous * h) + 1, h - 1).CopyTo(flags);
                    flags[h - 1] = _flagged[previous];
                }
                if (!flags.Contains(true))
                    continue;
                batch.Scorer.X.Slice(r * width, width).CopyTo(rescorer.X.Slice(n * width, width));
                batch.Scorer.Mask.Slice(r * width, width).CopyTo(rescorer.Mask.Slice(n * width, width));
                FlaggedHistory.Apply(rescorer.X.Slice(n * width, width), rescorer.Mask.Slice(n * width, width), flags, f);
                _affected[n++] = r;
            }
            if (n > 0)
                Rescore(batch, rescorer, n, f);
            for (int i = _waveStart[k]; i < _waveStart[k + 1]; i++)
            {
                int r = _byWave[i];
                _flagged[r] = FlaggedHistory.IsFlagged(_rescored ? _finalScores[r] : whole[r], threshold);
            }
        }
    }

    private void Rescore(MicroBatch batch, ModelScorer rescorer, int n, int f)
    {
        if (!_rescored)
        {
            // The first rescore of this batch: the final scores start as the whole-window ones.
            if (_finalScores.Length < batch.Capacity || _finalFeatureScores.Length != batch.Capacity * f)
            {
                _finalScores = new float[batch.Capacity];
                _finalFeatureScores = new float[batch.Capacity * f];
            }
            batch.Scorer.Scores(batch.Rows).CopyTo(_finalScores);
            batch.Scorer.FeatureScores(batch.Rows).CopyTo(_finalFeatureScores);
            _rescored = true;
        }
        rescorer.Run(n);
        var scores = rescorer.Scores(n);
        var featureScores = rescorer.FeatureScores(n);
        for (int i = 0; i < n; i++)
        {
            int r = _affected[i];
            if (!FlaggedHistory.PrefersMasked(_finalScores[r], scores[i]))
                continue;
            _finalScores[r] = scores[i];
            featureScores.Slice(i * f, f).CopyTo(_finalFeatureScores.AsSpan(r * f, f));
        }
    }

    /// <summary>Flags of the batch's events (above the model's calibrated threshold, as the flagged-history rule reads
    /// them) into their histories, then the touched entities' state into the record.</summary>
    /// <remarks>The same flags as the waves' <c>_flagged</c> (same final scores, same <see cref="FlaggedHistory.IsFlagged"/>),
    /// kept in two forms on purpose: the waves need every row's own window of flags, and all of the batch's events are
    /// appended before they run, so the full ring of an entity with two events in the batch has already dropped the oldest
    /// step of the earlier one's window; the ring keeps the flags of the steps it holds, for the next batches and the
    /// stored state, whether or not the model masks flagged history.</remarks>
    private void RecordWindowState(MicroBatch batch, ReadOnlySpan<float> scores, double threshold)
    {
        var rows = batch.Record.WindowState;
        rows.Spec = windows!.Spec!;
        for (int r = 0; r < batch.Rows; r++)
        {
            if (_appended[r] >= 0)
                _histories[r].SetFlag(_appended[r], FlaggedHistory.IsFlagged(scores[r], threshold));
        }
        for (int r = 0; r < batch.Rows; r++)
        {
            var history = _histories[r];
            if (history.PackedIn == batch.WindowSequence)
                continue;
            history.PackedIn = batch.WindowSequence;
            history.Pack(rows.Add(history.Partition, history.Entity, history.LastOffset, history.PackedLength));
        }
        Array.Clear(_histories, 0, batch.Rows);
    }

    private void Decide(MicroBatch batch)
    {
        int features = batch.Scorer.Bundle.Schema.Count;
        ReadOnlySpan<float> scores = batch.Rows == 0 ? default : _rescored ? _finalScores.AsSpan(0, batch.Rows) : batch.Scorer.Scores(batch.Rows);
        ReadOnlySpan<float> featureScores = batch.Rows == 0 ? default
            : _rescored ? _finalFeatureScores.AsSpan(0, batch.Rows * features) : batch.Scorer.FeatureScores(batch.Rows);
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
                    double.IsFinite(score) ? score : float.MaxValue, flagged, pending.Payload, 0, HistoryJson(batch, pending.Row));
            else if (!flagged && double.IsFinite(score) && u < recentRate + sampleRate)
                record.Training.Add(pending.Partition, pending.Offset, pending.EventTime?.UtcDateTime, score, false, pending.Payload,
                    _sampling.NextDouble(), HistoryJson(batch, pending.Row));
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
            record.Histories.Add(HistoryJson(batch, pending.Row));
            batch.FlaggedPayloads.Add(pending.Payload);
        }
        foreach (var (partition, next) in batch.NextOffsets)
        {
            record.OffsetPartitions.Add(partition);
            record.NextOffsets.Add(next);
        }
        if (batch.Model.Bundle.Window is not null && batch.Rows > 0)
            RecordWindowState(batch, scores, batch.Model.Bundle.Calibration.Threshold);
    }

    /// <summary>
    /// A windowed model's admitted row: the earlier steps its window held, as the jsonb of training_sample.history and
    /// recent_events.history (migration 0010): {"steps": [event objects, oldest first], "flagged": [...]}, rebuilt
    /// from the decoded steps (numbers as values, categories by name, binary features by their first token, missing
    /// features absent), so that decoding a step again gives the same values and retraining can refit the schema on
    /// them. "flagged" (whether each step's event was flagged) only when the model masks flagged history. Called for
    /// admitted and flagged rows only (which allocate their event text anyway); null for per-event models.
    /// </summary>
    private string? HistoryJson(MicroBatch batch, int row)
    {
        if (batch.Model.Bundle.Window is not { } window)
            return null;
        var schema = batch.Scorer.Bundle.Schema;
        int f = schema.Count, w = window.Steps, width = w * f, held = _held[row], h = w - 1;
        var x = batch.Scorer.X.Slice(row * width, width);
        var mask = batch.Scorer.Mask.Slice(row * width, width);
        _json.ResetWrittenCount();
        using (var writer = new Utf8JsonWriter(_json))
        {
            writer.WriteStartObject();
            writer.WriteStartArray("steps");
            for (int step = h - held; step < h; step++)
            {
                writer.WriteStartObject();
                for (int j = 0; j < f; j++)
                {
                    int k = (step * f) + j;
                    if (mask[k] == 0)
                        continue;
                    var feature = schema.Features[j];
                    switch (feature.Kind)
                    {
                        case FeatureKind.Numeric:
                            writer.WriteNumber(feature.Name, x[k]);
                            break;
                        case FeatureKind.Categorical:
                            writer.WriteString(feature.Name, feature.Vocabulary[(int)x[k]]);
                            break;
                        default:
                            writer.WriteString(feature.Name, x[k] != 0 ? feature.TrueTokens[0] : feature.FalseTokens[0]);
                            break;
                    }
                }
                writer.WriteEndObject();
            }
            writer.WriteEndArray();
            // The wave pass (RescoreFlaggedHistory) ran for every batch of such a model and set each row's step flags.
            if (window.MaskFlaggedHistory)
            {
                writer.WriteStartArray("flagged");
                var flags = _historyFlags.AsSpan(row * h, h);
                for (int step = h - held; step < h; step++)
                    writer.WriteBooleanValue(flags[step]);
                writer.WriteEndArray();
            }
            writer.WriteEndObject();
        }
        return Encoding.UTF8.GetString(_json.WrittenSpan);
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

/// <summary>An event's window as serve sees it: the event itself (decoded in place), then its entity's history.</summary>
public ref struct HistorySteps : IWindowSteps
{
    private readonly EntityHistory _history;
    private readonly ReadOnlySpan<float> _values;
    private readonly ReadOnlySpan<float> _mask;

    public HistorySteps(EntityHistory history, ReadOnlySpan<float> values, ReadOnlySpan<float> mask)
    {
        _history = history;
        _values = values;
        _mask = mask;
    }

    public readonly bool TryStep(int back, out ReadOnlySpan<float> values, out ReadOnlySpan<float> mask)
    {
        if (back == 0)
        {
            values = _values;
            mask = _mask;
            return true;
        }
        if (back > _history.Count)
        {
            values = mask = default;
            return false;
        }
        _history.Step(back, out values, out mask);
        return true;
    }
}
