using System.Diagnostics;
using System.Globalization;
using AnomalyVae.Cli;
using AnomalyVae.Streaming;
using Confluent.Kafka;

namespace AnomalyVae.Tools;

/// <summary>
/// A bare Confluent.Kafka consumer loop (same client, same librdkafka, same consumer settings as serve's), counting
/// messages from the start of a topic to its end: the rate serve's pipeline is measured against.
/// </summary>
internal static class ConsumerBenchmark
{
    public static int Run(KafkaOptions kafka, string topic, TextWriter output)
    {
        var config = kafka.ToConsumerConfig();
        config.GroupId = $"bench-consume-{Guid.NewGuid():N}";
        config.EnableAutoCommit = false;
        config.EnableAutoOffsetStore = false;
        config.AutoOffsetReset = AutoOffsetReset.Earliest;
        DetectorConsumerSettings.Apply(config, kafka);
        using var consumer = new ConsumerBuilder<Ignore, byte[]>(config).Build();
        var partitions = Partitions(consumer, kafka, topic);
        var ends = partitions.ToDictionary(p => p.Partition.Value, p => consumer.QueryWatermarkOffsets(p, TimeSpan.FromSeconds(10)).High.Value);
        long expected = ends.Values.Sum();
        consumer.Assign(partitions.Select(p => new TopicPartitionOffset(p, Offset.Beginning)));
        var remaining = new HashSet<int>(ends.Where(e => e.Value > 0).Select(e => e.Key));
        long count = 0, bytes = 0;
        Stopwatch? clock = null;
        var idle = Stopwatch.StartNew();
        while (remaining.Count > 0)
        {
            var result = consumer.Consume(TimeSpan.FromMilliseconds(100));
            if (result?.Message is null)
            {
                if (idle.Elapsed > TimeSpan.FromSeconds(30))
                    throw new CliException($"bench consume: no message for 30 s with {count} of {expected} read.");
                continue;
            }
            idle.Restart();
            clock ??= Stopwatch.StartNew();
            count++;
            bytes += result.Message.Value?.Length ?? 0;
            if (result.Offset.Value + 1 >= ends[result.Partition.Value])
                remaining.Remove(result.Partition.Value);
        }
        double seconds = clock?.Elapsed.TotalSeconds ?? 0;
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"consumed {count} events ({bytes / 1e6:F1} MB) from {partitions.Count} partitions in {seconds:F2} s: {count / Math.Max(seconds, 1e-9):F0} events/s (librdkafka {Librdkafka.VersionString})"));
        consumer.Close();
        return 0;
    }

    private static List<TopicPartition> Partitions(IConsumer<Ignore, byte[]> consumer, KafkaOptions kafka, string topic)
    {
        using var admin = new DependentAdminClientBuilder(consumer.Handle).Build();
        var metadata = admin.GetMetadata(topic, TimeSpan.FromSeconds(10));
        var found = metadata.Topics.FirstOrDefault();
        if (found is null || found.Error.IsError || found.Partitions.Count == 0)
            throw new CliException($"bench consume: topic '{topic}' not found on {kafka.BootstrapServers}{(found?.Error.IsError == true ? $": {found.Error.Reason}" : "")}.");
        return [.. found.Partitions.Select(p => new TopicPartition(topic, p.PartitionId))];
    }
}
