using System.Diagnostics.Metrics;

namespace AnomalyVae.Streaming;

/// <summary>
/// The alert path's instruments, on serve's meter (<see cref="ServiceMetrics.MeterName"/>): records published to the
/// alerts topics, and Alertmanager's queue, deliveries, failures and drops.
/// </summary>
public sealed class AlertMetrics : IDisposable
{
    private static readonly double[] DeliveryBuckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

    private readonly Meter _meter;
    private Func<int> _queueDepth = () => 0;
    private int _circuitOpen;

    public AlertMetrics()
    {
        _meter = new Meter(ServiceMetrics.MeterName);
        Published = _meter.CreateCounter<long>("anomalyvae_alerts_published", null,
            "Alert records acknowledged by the alerts topic, by detector and kind (incident_opened, incident_closed, anomaly).");
        Sent = _meter.CreateCounter<long>("anomalyvae_alertmanager_sent", null, "Alerts Alertmanager accepted, by detector.");
        Failures = _meter.CreateCounter<long>("anomalyvae_alertmanager_failures", null, "Failed POST attempts to Alertmanager (each retry counts).");
        Dropped = _meter.CreateCounter<long>("anomalyvae_alertmanager_dropped", null,
            "Alerts not delivered to Alertmanager, by reason: queue_full (scoring never waits), failed (retries spent or circuit open).");
        Delivery = _meter.CreateHistogram("anomalyvae_alertmanager_delivery_seconds", "s",
            "From the commit of the batch that opened or closed an incident to Alertmanager accepting the alert.", null,
            new InstrumentAdvice<double> { HistogramBucketBoundaries = DeliveryBuckets });
        _meter.CreateObservableGauge("anomalyvae_alertmanager_queue_depth", () => _queueDepth(), null, "Alerts waiting to be posted to Alertmanager.");
        _meter.CreateObservableGauge("anomalyvae_alertmanager_circuit_open", () => Volatile.Read(ref _circuitOpen), null,
            "1 while the circuit breaker in front of Alertmanager is open (posts fail at once), else 0.");
    }

    public Counter<long> Published { get; }

    public Counter<long> Sent { get; }

    public Counter<long> Failures { get; }

    public Counter<long> Dropped { get; }

    public Histogram<double> Delivery { get; }

    /// <summary>Where the queue depth is read from at scrape time.</summary>
    public void ObserveQueue(Func<int> depth) => _queueDepth = depth;

    public void SetCircuitOpen(bool open) => Volatile.Write(ref _circuitOpen, open ? 1 : 0);

    public static KeyValuePair<string, object?> Reason(string reason) => new("reason", reason);

    public void Dispose() => _meter.Dispose();
}
