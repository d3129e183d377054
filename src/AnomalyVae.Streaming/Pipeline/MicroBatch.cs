using System.Diagnostics;
using AnomalyVae.Events;
using AnomalyVae.Inference;
using AnomalyVae.Storage;

namespace AnomalyVae.Streaming;

/// <summary>One consumed event: where it came from, its bytes, and (once decoded) its row in the scorer's input.</summary>
public struct PendingEvent
{
    public int Partition;
    public long Offset;
    /// <summary>The scorer row of a decoded event; -1 for a dead letter.</summary>
    public int Row;
    public byte[] Payload;
    /// <summary>The broker's timestamp, else the time it was received (for event-to-row latency).</summary>
    public DateTime Time;
    public DateTime ReceivedAt;
    public EventEntity Entity;
    public DateTimeOffset? EventTime;
}

/// <summary>
/// One micro-batch on its way through the pipeline: consumed events, then (after <see cref="BatchScorer"/>) their
/// decoded rows in its scorer's buffers, dead letters and the record it commits. Reused after each commit; bound to
/// one model version at a time.
/// </summary>
public sealed class MicroBatch : IDisposable
{
    private DetectorModel? _model;
    private ModelScorer? _scorer;
    private ModelScorer? _rescorer;

    public MicroBatch(string detector, string topic, int capacity)
    {
        Events = new PendingEvent[capacity];
        Record = new BatchRecord(detector, topic);
    }

    /// <summary>The version this batch scores with (set by <see cref="Bind"/> before its first event).</summary>
    public DetectorModel Model => _model!;

    /// <summary>The version's scorer, with input and output buffers shaped for its feature count.</summary>
    public ModelScorer Scorer => _scorer!;

    /// <summary>A second scorer of the same version, for the windows a windowed model scores again with flagged
    /// history masked (<see cref="BatchScorer"/>); made on first use, so per-event models never pay for it.</summary>
    public ModelScorer Rescorer => _rescorer ??= Model.Bundle.CreateScorer(Capacity);

    public bool IsBound => _model is not null;

    /// <summary>The batch's trace (<see cref="Telemetry"/>): its "consume" span while it fills; score and commit
    /// are its children. Null when nobody listens.</summary>
    public Activity? Consuming { get; private set; }

    /// <summary>Starts the batch's trace at its first event (a new root: batches are traced one by one).</summary>
    public void StartTrace(string detector)
    {
        var ambient = Activity.Current;
        Activity.Current = null;
        Consuming = Telemetry.Source.StartActivity("consume", ActivityKind.Consumer);
        Consuming?.SetTag("anomalyvae.detector", detector);
        Activity.Current = ambient;
    }

    /// <summary>Ends the "consume" span when the batch is handed on.</summary>
    public void EndConsume()
    {
        if (Consuming is { } activity && activity.Duration == TimeSpan.Zero)
        {
            activity.SetTag("anomalyvae.events", Count);
            activity.Stop();
        }
    }

    /// <summary>Starts a child span of this batch's trace (null without a trace).</summary>
    public Activity? StartStage(string name) =>
        Consuming is { } parent ? Telemetry.Source.StartActivity(name, ActivityKind.Internal, parent.Context) : null;

    /// <summary>Binds the (empty) batch to <paramref name="model"/>, whose reference it takes over, and lets go of
    /// the previous version (disposed once no batch and not the detector uses it).</summary>
    public void Bind(DetectorModel model)
    {
        ModelScorer scorer;
        try
        {
            scorer = model.Bundle.CreateScorer(Capacity);
        }
        catch
        {
            model.Release();
            throw;
        }
        Release();
        _model = model;
        _scorer = scorer;
        Record.ModelVersion = model.Version;
        Record.Threshold = model.Threshold;
    }

    public PendingEvent[] Events { get; }

    public int Capacity => Events.Length;

    public List<DeadLetter> DeadLetters { get; } = [];

    public Dictionary<int, long> NextOffsets { get; } = [];

    public BatchRecord Record { get; }

    /// <summary>Payloads of the flagged rows, in <see cref="BatchRecord.Events"/> order.</summary>
    public List<byte[]> FlaggedPayloads { get; } = [];

    public int Count { get; set; }

    /// <summary>Decoded events (scorer rows in use).</summary>
    public int Rows { get; set; }

    /// <summary>Decoded, scored and decided: <see cref="Record"/> is ready to commit.</summary>
    public bool Built { get; set; }

    public bool DeadLettersSent { get; set; }

    /// <summary>A windowed model's batch sequence number (<see cref="EntityWindows.BeginBatch"/>); 0 otherwise.</summary>
    public long WindowSequence { get; set; }

    /// <summary>The background decode/score/decide of this batch, while one runs.</summary>
    public Task? Building { get; set; }

    /// <summary>CPU seconds of this batch's stages on their threads: decode, score, decide (and samples).</summary>
    public double DecodeSeconds { get; set; }

    public double ScoreSeconds { get; set; }

    public double DecideSeconds { get; set; }

    /// <summary>Appends a consumed event (decoded later, by <see cref="BatchScorer"/>).</summary>
    public void Add(int partition, long offset, byte[] payload, DateTime time, DateTime receivedAt)
    {
        ref var pending = ref Events[Count++];
        pending.Partition = partition;
        pending.Offset = offset;
        pending.Payload = payload;
        pending.Time = time;
        pending.ReceivedAt = receivedAt;
        pending.Row = -1;
        NextOffsets[partition] = offset + 1;
    }

    public void Clear()
    {
        Array.Clear(Events, 0, Count);
        Count = 0;
        Rows = 0;
        DeadLetters.Clear();
        NextOffsets.Clear();
        FlaggedPayloads.Clear();
        Record.Clear();
        Built = false;
        DeadLettersSent = false;
        WindowSequence = 0;
        Building = null;
        DecodeSeconds = ScoreSeconds = DecideSeconds = 0;
        Consuming?.Dispose();
        Consuming = null;
    }

    public void Dispose() => Release();

    private void Release()
    {
        _scorer?.Dispose();
        _rescorer?.Dispose();
        _model?.Release();
        _scorer = null;
        _rescorer = null;
        _model = null;
    }
}
