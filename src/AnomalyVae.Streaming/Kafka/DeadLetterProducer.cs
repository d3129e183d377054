using AnomalyVae.Events;
using Confluent.Kafka;
using Microsoft.Extensions.Logging;

namespace AnomalyVae.Streaming;

/// <summary>
/// Sends dead-letter envelopes to a detector's dead-letter topic. A batch's dead letters are acknowledged by
/// the broker (acks=all) before the batch commits in PostgreSQL, so no event is acknowledged before it is
/// either scored or dead-lettered. A crash between the two resends them: dead letters are at-least-once
/// (consumers of the dead-letter topic de-duplicate on detector/topic/partition/offset when it matters).
/// Shared by all detectors (one librdkafka producer per process).
/// </summary>
public sealed class DeadLetterProducer : IDisposable
{
    private readonly IProducer<Null, byte[]> _producer;

    public DeadLetterProducer(KafkaOptions options, ILogger<DeadLetterProducer> logger)
    {
        var config = options.ToProducerConfig();
        config.Acks ??= Acks.All;
        config.ClientId ??= "anomalyvae-dead-letters";
        // librdkafka's default (5 minutes) would hold a batch that long when the topic is missing; fail sooner
        // and let the worker's retry loop (partitions paused, not ready) take over.
        config.MessageTimeoutMs ??= 30_000;
        _producer = new ProducerBuilder<Null, byte[]>(config)
            .SetLogHandler((_, m) => KafkaLog.Write(logger, m))
            .SetErrorHandler((_, e) => logger.LogWarning("Dead-letter producer: {Reason} ({Code})", e.Reason, e.Code))
            .Build();
    }

    /// <summary>The producer's handle, for metadata requests (readiness).</summary>
    public Handle Handle => _producer.Handle;

    /// <summary>Sends <paramref name="letters"/> and waits until the broker has acknowledged every one.</summary>
    /// <exception cref="ProduceException{TKey, TValue}">A letter was not accepted; the batch must not commit.</exception>
    public async Task SendAsync(string topic, IReadOnlyList<DeadLetter> letters, CancellationToken cancellationToken)
    {
        if (letters.Count == 0)
            return;
        var sends = new Task<DeliveryResult<Null, byte[]>>[letters.Count];
        for (int i = 0; i < letters.Count; i++)
            sends[i] = _producer.ProduceAsync(topic, new Message<Null, byte[]> { Value = letters[i].ToUtf8() }, cancellationToken);
        await Task.WhenAll(sends);
    }

    public void Dispose()
    {
        _producer.Flush(TimeSpan.FromSeconds(5));
        _producer.Dispose();
    }
}

/// <summary>librdkafka log lines through ILogger.</summary>
internal static class KafkaLog
{
    public static void Write(ILogger logger, LogMessage message)
    {
        var level = message.Level switch
        {
            SyslogLevel.Emergency or SyslogLevel.Alert or SyslogLevel.Critical or SyslogLevel.Error => LogLevel.Error,
            SyslogLevel.Warning => LogLevel.Warning,
            SyslogLevel.Notice or SyslogLevel.Info => LogLevel.Information,
            _ => LogLevel.Debug,
        };
        logger.Log(level, "librdkafka {Facility} {Name}: {Message}", message.Facility, message.Name, message.Message);
    }
}
