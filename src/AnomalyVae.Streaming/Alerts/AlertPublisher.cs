using AnomalyVae.Storage;
using Confluent.Kafka;
using Microsoft.Extensions.Logging;

namespace AnomalyVae.Streaming;

/// <summary>
/// Publishes incidents: to each detector's alerts topic before its batch commits (acknowledged by the broker, like dead
/// letters: at-least-once, duplicates carry the same dedup_key), and to Alertmanager after it commits (through
/// <see cref="AlertmanagerSender"/>'s bounded queue, never waiting). One librdkafka producer per process, made on first
/// use (none when no detector has an alerts topic).
/// </summary>
public sealed class AlertPublisher : IDisposable
{
    private readonly KafkaOptions _kafka;
    private readonly AlertmanagerOptions _alertmanager;
    private readonly AlertmanagerSender? _sender;
    private readonly AlertMetrics _metrics;
    private readonly ILogger _logger;
    private readonly Lazy<IProducer<string?, byte[]>> _producer;

    public AlertPublisher(KafkaOptions kafka, AlertmanagerOptions alertmanager, AlertmanagerSender? sender, AlertMetrics metrics,
        ILogger<AlertPublisher> logger)
    {
        _kafka = kafka;
        _alertmanager = alertmanager;
        _sender = sender;
        _metrics = metrics;
        _logger = logger;
        _producer = new Lazy<IProducer<string?, byte[]>>(CreateProducer);
    }

    /// <summary>The alerts of <paramref name="detector"/>; null when it publishes nowhere.</summary>
    public DetectorAlerts? For(DetectorOptions detector)
    {
        bool topic = !string.IsNullOrWhiteSpace(detector.Alerts.Topic);
        bool alertmanager = _sender is not null && detector.Alerts.Alertmanager;
        return topic || alertmanager ? new DetectorAlerts(this, detector, topic ? detector.Alerts.Topic : null, alertmanager) : null;
    }

    internal string Severity(double pValue) => _alertmanager.Severity(pValue);

    /// <summary>Produces <paramref name="records"/> (key, value) to <paramref name="topic"/> and waits for every acknowledgement.</summary>
    /// <exception cref="ProduceException{TKey, TValue}">One was not accepted: the batch must not commit.</exception>
    internal async Task ProduceAsync(string topic, List<(string? Key, byte[] Value, string Kind)> records, string detector, CancellationToken cancellationToken)
    {
        if (records.Count == 0)
            return;
        var producer = _producer.Value;
        var sends = new Task<DeliveryResult<string?, byte[]>>[records.Count];
        for (int i = 0; i < records.Count; i++)
            sends[i] = producer.ProduceAsync(topic, new Message<string?, byte[]> { Key = records[i].Key, Value = records[i].Value }, cancellationToken);
        await Task.WhenAll(sends);
        foreach (var record in records)
            _metrics.Published.Add(1, new("detector", detector), new("kind", record.Kind));
    }

    internal void Enqueue(IReadOnlyList<IncidentTransition> transitions) => _sender?.EnqueueCommitted(transitions);

    private IProducer<string?, byte[]> CreateProducer()
    {
        var config = _kafka.ToProducerConfig();
        config.Acks ??= Acks.All;
        config.ClientId ??= "anomalyvae-alerts";
        // As for dead letters: fail a batch within 30 s when the topic is away, and let the worker's retry loop wait.
        config.MessageTimeoutMs ??= 30_000;
        // The commit waits for these records: send them at once rather than after librdkafka's 5 ms linger.
        config.LingerMs ??= 0;
        return new ProducerBuilder<string?, byte[]>(config)
            .SetLogHandler((_, m) => KafkaLog.Write(_logger, m))
            .SetErrorHandler((_, e) => _logger.LogWarning("Alerts producer: {Reason} ({Code})", e.Reason, e.Code))
            .Build();
    }

    public void Dispose()
    {
        if (_producer.IsValueCreated)
        {
            _producer.Value.Flush(TimeSpan.FromSeconds(5));
            _producer.Value.Dispose();
        }
    }
}

/// <summary>One detector's alerts: the hook <see cref="BatchCommitter"/> runs before COMMIT, and the hand-over after it.</summary>
public sealed class DetectorAlerts
{
    private readonly AlertPublisher _publisher;
    private readonly DetectorOptions _detector;
    private readonly string? _topic;
    private readonly bool _alertmanager;

    internal DetectorAlerts(AlertPublisher publisher, DetectorOptions detector, string? topic, bool alertmanager)
    {
        _publisher = publisher;
        _detector = detector;
        _topic = topic;
        _alertmanager = alertmanager;
    }

    /// <summary>Inside the batch transaction, before COMMIT: the alert records of <paramref name="transitions"/> (and of every
    /// anomaly of <paramref name="record"/> when configured), acknowledged by the broker.</summary>
    public Task BeforeCommitAsync(BatchRecord record, IReadOnlyList<IncidentTransition> transitions, CancellationToken cancellationToken)
    {
        if (_topic is null)
            return Task.CompletedTask;
        var now = DateTime.UtcNow;
        var records = new List<(string?, byte[], string)>(transitions.Count + (_detector.Alerts.EveryAnomaly ? record.Scores.Count : 0));
        foreach (var t in transitions)
            records.Add((t.Entity, AlertRecord.ForIncident(t, _publisher.Severity(t.MinPValue), now), AlertRecord.Kind(t.Kind)));
        if (_detector.Alerts.EveryAnomaly)
        {
            for (int i = 0; i < record.Scores.Count; i++)
                records.Add((record.Entities[i] ?? record.Detector, AlertRecord.ForAnomaly(record, i, _publisher.Severity(record.PValues[i]), now), AlertRecord.Anomaly));
        }
        return _publisher.ProduceAsync(_topic, records, record.Detector, cancellationToken);
    }

    /// <summary>After COMMIT: hands the transitions to Alertmanager's queue (returns at once).</summary>
    public void Committed(IReadOnlyList<IncidentTransition> transitions)
    {
        if (_alertmanager && transitions.Count > 0)
            _publisher.Enqueue(transitions);
    }
}
