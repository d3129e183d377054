using System.Text;
using AnomalyVae.Events;
using AnomalyVae.Model;
using AnomalyVae.Streaming;
using Confluent.Kafka;

namespace AnomalyVae.Tools;

/// <summary>
/// Produces a generator's events to a Kafka topic as JSON payloads keyed by entity id (so each machine or account
/// stays on one partition and in order). Used by <c>anomalyvae generate --topic</c>, the demo, the benchmarks and the
/// integration tests, so all of them exercise the same path. Every event must be acknowledged: a delivery error
/// stops the run and fails it, nothing is dropped silently.
/// </summary>
public static class SyntheticStreamProducer
{
    /// <summary>Events generated and handed to the client per pacing step.</summary>
    private const int Batch = 512;

    /// <summary>
    /// Producer settings for a generation run: the options' config plus throughput defaults (linger 5 ms,
    /// batches of up to 10,000 messages, a 500,000-message local queue) and a 30 s delivery timeout, so an
    /// unreachable broker fails the run in half a minute instead of librdkafka's five. Any of these the options'
    /// <see cref="KafkaOptions.Properties"/> set (under either librdkafka alias) wins.
    /// </summary>
    public static ProducerConfig ProducerConfig(KafkaOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var config = options.ToProducerConfig();
        Default(config, options, "10000", "batch.num.messages");
        Default(config, options, "5", "linger.ms", "queue.buffering.max.ms");
        Default(config, options, "500000", "queue.buffering.max.messages");
        Default(config, options, "30000", "message.timeout.ms", "delivery.timeout.ms");
        return config;
    }

    /// <summary>
    /// Generates events while <paramref name="pacer"/> allows and produces each to <paramref name="topic"/>; returns
    /// once every produced event is acknowledged. <paramref name="labels"/>, when given, receives one
    /// <see cref="SyntheticStream.LabelsHeader"/> record per event (the header is written here).
    /// </summary>
    /// <exception cref="KafkaException">A delivery failed (the message says how many and why) or the client hit a fatal error.</exception>
    /// <exception cref="OperationCanceledException">Cancelled; what was produced is flushed for a few seconds first.</exception>
    public static async Task<StreamSummary> ProduceAsync(
        SyntheticStream generator, string topic, ProducerConfig config, EventPacer pacer, CsvWriter? labels, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(generator);
        ArgumentException.ThrowIfNullOrWhiteSpace(topic);
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(pacer);

        var deliveries = new Deliveries();
        using var producer = Build(config, deliveries);
        EnsureTopicExists(producer, topic, deliveries);
        Action<DeliveryReport<byte[], byte[]>> onDelivery = deliveries.Record;

        // Keys are the entity ids' UTF-8 bytes, encoded once per entity.
        var keys = new byte[generator.EntityCount][];
        if (labels is not null)
        {
            labels.WriteRecord(SyntheticStream.LabelsHeader);
        }

        long produced = 0, anomalies = 0;
        try
        {
            int n;
            while ((n = await pacer.NextBatchAsync(Batch, cancellationToken)) > 0)
            {
                for (var i = 0; i < n; i++)
                {
                    generator.Next();
                    var key = keys[generator.EntityIndex] ??= Encoding.UTF8.GetBytes(generator.EntityId);
                    // The client API takes whole arrays, so each payload is copied out of the generator's buffer.
                    var message = new Message<byte[], byte[]> { Key = key, Value = generator.EventJson().ToArray() };
                    Produce(producer, topic, message, onDelivery, cancellationToken);
                    produced++;
                    anomalies += generator.Label;
                    if (labels is not null)
                        generator.WriteLabelRecord(labels);
                }

                if (deliveries.FirstError is not null || deliveries.Fatal is not null)
                    break;
            }
        }
        catch (OperationCanceledException)
        {
            producer.Flush(TimeSpan.FromSeconds(5));
            throw;
        }

        // Wait for every acknowledgement; librdkafka reports each message within message.timeout.ms.
        while (producer.Flush(TimeSpan.FromMilliseconds(200)) > 0)
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (deliveries.Fatal is not null)
                break;
        }

        var elapsed = pacer.Elapsed;
        if (deliveries.Fatal is { } fatalError)
            throw new KafkaException(new Error(fatalError.Code, $"Kafka client failed after {produced} events to '{topic}': {fatalError.Reason}", isFatal: true));
        if (deliveries.FirstError is { } error)
        {
            throw new KafkaException(new Error(
                error.Code, $"{deliveries.Failed} of {produced} events were not delivered to '{topic}': {error.Reason}"));
        }

        if (deliveries.Delivered != produced)
        {
            throw new KafkaException(new Error(
                ErrorCode.Local_Fail, $"{produced} events produced to '{topic}' but {deliveries.Delivered} acknowledged"));
        }

        return new StreamSummary(produced, anomalies, elapsed);
    }

    private static IProducer<byte[], byte[]> Build(ProducerConfig config, Deliveries deliveries)
    {
        try
        {
            return new ProducerBuilder<byte[], byte[]>(config)
                .SetErrorHandler((_, error) => deliveries.RecordClientError(error))
                .Build();
        }
        catch (InvalidOperationException e)
        {
            // librdkafka rejects unknown properties and bad values here ("No such configuration property: ...").
            throw new KafkaException(new Error(ErrorCode.Local_InvalidArg, $"invalid producer configuration: {e.Message}"));
        }
    }

    /// <summary>
    /// Asks the cluster for the topic's metadata before producing, so a misspelt topic or an unreachable broker
    /// fails in seconds with a clear message instead of every message timing out after message.timeout.ms.
    /// The request is repeated in short steps because librdkafka's metadata call busy-waits while a broker refuses
    /// connections; once the client reports all brokers down, the run fails at once.
    /// </summary>
    private static void EnsureTopicExists(IProducer<byte[], byte[]> producer, string topic, Deliveries deliveries)
    {
        using var admin = new DependentAdminClientBuilder(producer.Handle).Build();
        var deadline = DateTime.UtcNow + MetadataTimeout;
        Metadata metadata;
        while (true)
        {
            try
            {
                metadata = admin.GetMetadata(topic, TimeSpan.FromMilliseconds(500));
                break;
            }
            catch (KafkaException e)
            {
                if (deliveries.AllBrokersDown is { } down)
                    throw new KafkaException(new Error(down.Code, $"cannot reach the brokers ({deliveries.LastClientError?.Reason ?? down.Reason})"));
                if (DateTime.UtcNow > deadline)
                    throw new KafkaException(new Error(e.Error.Code, $"no metadata for topic '{topic}' within {MetadataTimeout.TotalSeconds:0} s ({e.Error.Reason})"));
            }
        }

        var error = metadata.Topics.SingleOrDefault(t => t.Topic == topic)?.Error;
        if (error is { Code: ErrorCode.UnknownTopicOrPart })
            throw new KafkaException(new Error(error.Code, $"topic '{topic}' does not exist (create it first)"));
    }

    private static readonly TimeSpan MetadataTimeout = TimeSpan.FromSeconds(10);

    private static void Produce(
        IProducer<byte[], byte[]> producer, string topic, Message<byte[], byte[]> message,
        Action<DeliveryReport<byte[], byte[]>> onDelivery, CancellationToken cancellationToken)
    {
        while (true)
        {
            try
            {
                producer.Produce(topic, message, onDelivery);
                return;
            }
            catch (ProduceException<byte[], byte[]> e) when (e.Error.Code == ErrorCode.Local_QueueFull)
            {
                // The local queue is full: the broker is slower than the generator. Wait for deliveries, then retry.
                cancellationToken.ThrowIfCancellationRequested();
                producer.Poll(TimeSpan.FromMilliseconds(20));
            }
        }
    }

    private static void Default(ProducerConfig config, KafkaOptions options, string value, params string[] names)
    {
        if (!names.Any(options.Properties.ContainsKey))
            config.Set(names[0], value);
    }

    /// <summary>Delivery counts and errors, updated on the client's threads.</summary>
    private sealed class Deliveries
    {
        private long _delivered;
        private long _failed;
        private Error? _firstError;
        private Error? _fatal;
        private Error? _allBrokersDown;
        private Error? _lastClientError;

        public Error? Fatal => Volatile.Read(ref _fatal);

        /// <summary>
        /// Non-fatal client errors (a broker connection dropped) are retried by librdkafka and surface as delivery
        /// errors if they persist; a fatal one ends the run.
        /// </summary>
        public void RecordClientError(Error error)
        {
            if (error.IsFatal)
                Interlocked.CompareExchange(ref _fatal, error, null);
            else if (error.Code == ErrorCode.Local_AllBrokersDown)
                Volatile.Write(ref _allBrokersDown, error);
            else
                Volatile.Write(ref _lastClientError, error);
        }

        /// <summary>Set when librdkafka reports that no broker is reachable (it keeps retrying).</summary>
        public Error? AllBrokersDown => Volatile.Read(ref _allBrokersDown);

        /// <summary>The latest non-fatal client error other than "all brokers down" (usually the connection failure itself).</summary>
        public Error? LastClientError => Volatile.Read(ref _lastClientError);

        public long Delivered => Interlocked.Read(ref _delivered);

        public long Failed => Interlocked.Read(ref _failed);

        public Error? FirstError => Volatile.Read(ref _firstError);

        public void Record(DeliveryReport<byte[], byte[]> report)
        {
            if (report.Error.IsError)
            {
                Interlocked.Increment(ref _failed);
                Interlocked.CompareExchange(ref _firstError, report.Error, null);
            }
            else
            {
                Interlocked.Increment(ref _delivered);
            }
        }
    }
}
