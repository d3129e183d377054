using Confluent.Kafka;

namespace AnomalyVae.Streaming;

/// <summary>The consumer settings of serve's detectors (and of `bench consume`, so both read alike).</summary>
public static class DetectorConsumerSettings
{
    /// <summary>Sets what a detector's consumer needs; a property named in Kafka:Properties keeps its value.</summary>
    public static void Apply(ConsumerConfig config, KafkaOptions kafka)
    {
        config.EnablePartitionEof = false;
        // Per message the client would otherwise marshal the topic name and the headers (allocations, P/Invokes).
        config.ConsumeResultFields = "timestamp";
        // librdkafka ≥ 2.2 stops fetching for fetch.queue.backoff.ms (default 1 s) whenever its prefetch queue is
        // full; a consumer that drains the queue in bursts then idles for most of that second.
        if (!kafka.Properties.ContainsKey("fetch.queue.backoff.ms"))
            config.Set("fetch.queue.backoff.ms", "10");
    }
}
