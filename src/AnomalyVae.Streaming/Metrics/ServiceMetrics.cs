using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using AnomalyVae.Inference;

namespace AnomalyVae.Streaming;

/// <summary>
/// The service's instruments (System.Diagnostics.Metrics, meter <see cref="MeterName"/>). Names are already in
/// Prometheus form; <see cref="PrometheusExposition"/> adds "_total" to counters. Recording allocates nothing.
/// </summary>
public sealed class ServiceMetrics : IDisposable
{
    public const string MeterName = "AnomalyVae.Service";

    private static readonly double[] BatchBuckets = [1, 8, 32, 128, 256, 512, 1024, 2048, 4096, 16384, 65536];
    private static readonly double[] LatencyBuckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

    private readonly Meter _meter;
    private readonly ConcurrentDictionary<(string Detector, int Partition), long> _lag = new();
    private readonly ConcurrentDictionary<string, double> _driftPsi = new();
    private readonly ConcurrentDictionary<string, string> _models = new(StringComparer.Ordinal);

    public ServiceMetrics()
    {
        _meter = new Meter(MeterName);
        Consumed = _meter.CreateCounter<long>("anomalyvae_events_consumed", null, "Events read from Kafka.");
        Scored = _meter.CreateCounter<long>("anomalyvae_events_scored", null, "Events scored by the model.");
        Flagged = _meter.CreateCounter<long>("anomalyvae_events_flagged", null, "Events scored above the threshold.");
        DeadLettered = _meter.CreateCounter<long>("anomalyvae_events_dead_lettered", null, "Events sent to the dead-letter topic, by reason.");
        CommitFailures = _meter.CreateCounter<long>("anomalyvae_commit_failures", null, "Failed attempts to commit a batch to PostgreSQL.");
        BatchSize = _meter.CreateHistogram("anomalyvae_batch_size", null, "Events per micro-batch.", null,
            new InstrumentAdvice<double> { HistogramBucketBoundaries = BatchBuckets });
        ScoringSeconds = _meter.CreateHistogram("anomalyvae_scoring_seconds", "s", "CPU time per batch to decode, score (ONNX Runtime) and decide.", null,
            new InstrumentAdvice<double> { HistogramBucketBoundaries = LatencyBuckets });
        CommitSeconds = _meter.CreateHistogram("anomalyvae_commit_seconds", "s", "Dead-letter flush plus PostgreSQL transaction per batch.", null,
            new InstrumentAdvice<double> { HistogramBucketBoundaries = LatencyBuckets });
        EventToRowSeconds = _meter.CreateHistogram("anomalyvae_event_to_row_seconds", "s",
            "From the event's Kafka timestamp (or its receipt, when the broker has none) to the commit of its batch.", null,
            new InstrumentAdvice<double> { HistogramBucketBoundaries = LatencyBuckets });
        _meter.CreateObservableGauge("anomalyvae_consumer_lag", ObserveLag, null, "High watermark minus the consumer position, per partition.");
        _meter.CreateObservableGauge("anomalyvae_drift_psi", ObserveDrift, null,
            "Population stability index of the detector's recent score bins against its calibration (drift above Retraining:DriftThreshold).");
        ModelLoadFailures = _meter.CreateCounter<long>("anomalyvae_model_load_failures", null,
            "Activated registry versions that did not load (the detector kept scoring with its previous version).");
        _meter.CreateObservableGauge("anomalyvae_model_info", ObserveModels, null, "1 for the model version each detector starts new batches with.");
        StageCpuSeconds = _meter.CreateCounter<double>("anomalyvae_stage_cpu_seconds", "s",
            "CPU seconds spent per pipeline stage on its own thread (consume, decode, score, decide); commit work and librdkafka's threads are not in it.");
        var build = BuildInfo.Current;
        _meter.CreateObservableGauge("anomalyvae_build_info", () => new Measurement<long>(1,
            new KeyValuePair<string, object?>("version", build.Version),
            new KeyValuePair<string, object?>("onnxruntime", build.OnnxRuntime),
            new KeyValuePair<string, object?>("librdkafka", build.Librdkafka)), null,
            "1, labelled with this build's version and the ONNX Runtime and librdkafka versions it loaded.");
    }

    public Counter<long> Consumed { get; }

    public Counter<long> Scored { get; }

    public Counter<long> Flagged { get; }

    public Counter<long> DeadLettered { get; }

    public Counter<long> CommitFailures { get; }

    public Histogram<double> BatchSize { get; }

    public Histogram<double> ScoringSeconds { get; }

    public Histogram<double> CommitSeconds { get; }

    public Histogram<double> EventToRowSeconds { get; }

    public Counter<long> ModelLoadFailures { get; }

    /// <summary>CPU seconds per pipeline stage (label stage: consume, decode, score, decide), on the stage's own thread.</summary>
    public Counter<double> StageCpuSeconds { get; }

    /// <summary>The label of one pipeline stage.</summary>
    public static KeyValuePair<string, object?> Stage(string name) => new("stage", name);

    /// <summary>Records the model version <paramref name="detector"/> scores new batches with (read at scrape time).</summary>
    public void SetModelVersion(string detector, string version) => _models[detector] = version;

    /// <summary>Records the lag of one partition (read at scrape time).</summary>
    public void SetLag(string detector, int partition, long lag) => _lag[(detector, partition)] = Math.Max(0, lag);

    /// <summary>Forgets the lag of a partition this process no longer owns.</summary>
    public void ClearLag(string detector, int partition) => _lag.TryRemove((detector, partition), out _);

    /// <summary>Records a detector's drift index (read at scrape time).</summary>
    public void SetDriftPsi(string detector, double psi) => _driftPsi[detector] = psi;

    /// <summary>Forgets a detector's drift index (no scored event in its drift window).</summary>
    public void ClearDriftPsi(string detector) => _driftPsi.TryRemove(detector, out _);

    public void Dispose() => _meter.Dispose();

    private IEnumerable<Measurement<double>> ObserveDrift()
    {
        foreach (var (detector, psi) in _driftPsi)
            yield return new Measurement<double>(psi, new KeyValuePair<string, object?>("detector", detector));
    }

    private IEnumerable<Measurement<long>> ObserveModels()
    {
        foreach (var (detector, version) in _models)
        {
            yield return new Measurement<long>(1,
                new KeyValuePair<string, object?>("detector", detector),
                new KeyValuePair<string, object?>("version", version));
        }
    }

    private IEnumerable<Measurement<long>> ObserveLag()
    {
        foreach (var ((detector, partition), lag) in _lag)
        {
            yield return new Measurement<long>(lag,
                new KeyValuePair<string, object?>("detector", detector),
                new KeyValuePair<string, object?>("partition", partition));
        }
    }
}
