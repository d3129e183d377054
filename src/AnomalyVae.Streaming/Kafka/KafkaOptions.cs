using Confluent.Kafka;

namespace AnomalyVae.Streaming;

/// <summary>
/// Kafka client settings, bound from the configuration section <see cref="SectionName"/>. <see cref="Properties"/>
/// passes any librdkafka property through verbatim and is applied last, over the typed settings and the defaults set
/// here (docs/deployment.md#kafka-client).
/// </summary>
public sealed class KafkaOptions
{
    public const string SectionName = "Kafka";

    public string BootstrapServers { get; set; } = "127.0.0.1:9092";

    public string GroupId { get; set; } = "anomalyvae";

    /// <summary>librdkafka properties by their librdkafka names, e.g. "session.timeout.ms".</summary>
    public Dictionary<string, string> Properties { get; } = new(StringComparer.Ordinal);

    public ConsumerConfig ToConsumerConfig()
    {
        Validate();
        if (string.IsNullOrWhiteSpace(GroupId))
        {
            throw new InvalidOperationException($"{SectionName}:{nameof(GroupId)} is empty; consumers need a group id to commit offsets.");
        }

        var config = new ConsumerConfig
        {
            BootstrapServers = BootstrapServers,
            GroupId = GroupId,
        };
        ApplyProperties(config);
        return config;
    }

    public ProducerConfig ToProducerConfig()
    {
        Validate();
        var config = new ProducerConfig { BootstrapServers = BootstrapServers };
        ApplyProperties(config);
        return config;
    }

    private void Validate()
    {
        Librdkafka.Install(); // before the first client: which native library Confluent.Kafka binds is decided then
        if (string.IsNullOrWhiteSpace(BootstrapServers))
        {
            throw new InvalidOperationException($"{SectionName}:{nameof(BootstrapServers)} is empty; set it to host:port[,host:port...].");
        }

        foreach (var (key, value) in Properties)
        {
            // An empty value usually means a configuration key without a value (or a typo in an
            // environment variable); librdkafka would reject it later with a less helpful message.
            if (string.IsNullOrWhiteSpace(key) || string.IsNullOrEmpty(value))
            {
                throw new InvalidOperationException($"{SectionName}:{nameof(Properties)} has an entry with an empty name or value ('{key}').");
            }
        }
    }

    private void ApplyProperties(ClientConfig config)
    {
        foreach (var (key, value) in Properties)
        {
            config.Set(key, value);
        }
    }
}
