using AnomalyVae.IntegrationTests.Infrastructure;
using Confluent.Kafka;

namespace AnomalyVae.IntegrationTests.Kafka;

/// <summary>Produce, consume in a group, commit, and resume from the commit, against the real broker.</summary>
[Collection(InfrastructureCollection.Name)]
public sealed class ConsumerGroupTests(TestInfrastructure infrastructure)
{
    private const int MessageCount = 400;
    private const int ConsumedBeforeCommit = 150;
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task Second_consumer_in_the_group_resumes_after_the_committed_offsets()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        var topic = await infrastructure.CreateTopicAsync("group-resume", partitions: 2, cts.Token);
        var groupId = $"group-{Guid.NewGuid():N}";

        var produced = Produce(topic);
        Assert.Equal(MessageCount, produced.Count);
        Assert.Equal([0, 1], produced.Select(p => p.Partition.Value).Distinct().Order());

        // First consumer: read part of the topic, commit exactly what it read, leave the group.
        var firstBatch = new List<ConsumeResult<string, string>>();
        List<TopicPartitionOffset> committed;
        using (var first = new ConsumerBuilder<string, string>(infrastructure.ConsumerConfig(groupId)).Build())
        {
            first.Subscribe(topic);
            firstBatch.AddRange(ConsumeUntil(first, ConsumedBeforeCommit, cts.Token));
            var toCommit = firstBatch
                .GroupBy(r => r.TopicPartition)
                .Select(g => new TopicPartitionOffset(g.Key, g.Max(r => r.Offset.Value) + 1))
                .ToList();
            first.Commit(toCommit);

            committed = first.Committed(
                [new TopicPartition(topic, 0), new TopicPartition(topic, 1)], TimeSpan.FromSeconds(10));
            foreach (var expected in toCommit)
            {
                Assert.Contains(committed, c => c.TopicPartition == expected.TopicPartition && c.Offset == expected.Offset);
            }

            first.Close();
        }

        // Second consumer, same group: gets exactly the messages after the commit, nothing before.
        var expectedRest = produced
            .Where(p => committed.Any(c => c.TopicPartition == p.TopicPartition
                && (c.Offset == Offset.Unset || p.Offset >= c.Offset)))
            .Select(p => p.Message.Value)
            .Order(StringComparer.Ordinal)
            .ToList();
        Assert.Equal(MessageCount - ConsumedBeforeCommit, expectedRest.Count);

        using var second = new ConsumerBuilder<string, string>(infrastructure.ConsumerConfig(groupId)).Build();
        second.Subscribe(topic);
        var secondBatch = ConsumeUntil(second, expectedRest.Count, cts.Token);
        Assert.Equal(expectedRest, secondBatch.Select(r => r.Message.Value).Order(StringComparer.Ordinal));

        // Everything produced was seen exactly once across the two consumers.
        var all = firstBatch.Concat(secondBatch).Select(r => r.Message.Value).ToHashSet(StringComparer.Ordinal);
        Assert.Equal(MessageCount, all.Count);

        // After the second consumer commits, the group's position is the end of each partition.
        second.Commit();
        foreach (var partition in new[] { new TopicPartition(topic, 0), new TopicPartition(topic, 1) })
        {
            var end = second.QueryWatermarkOffsets(partition, TimeSpan.FromSeconds(10)).High;
            var position = second.Committed([partition], TimeSpan.FromSeconds(10)).Single().Offset;
            Assert.Equal(end, position);
        }

        second.Close();
    }

    private List<DeliveryResult<string, string>> Produce(string topic)
    {
        var delivered = new List<DeliveryResult<string, string>>();
        var errors = new List<string>();
        using var producer = new ProducerBuilder<string, string>(infrastructure.ProducerConfig()).Build();
        for (var i = 0; i < MessageCount; i++)
        {
            var message = new Message<string, string> { Key = $"k{i}", Value = $"m{i:D4}" };
            producer.Produce(new TopicPartition(topic, i % 2), message, report =>
            {
                lock (delivered)
                {
                    if (report.Error.IsError)
                    {
                        errors.Add(report.Error.Reason);
                    }
                    else
                    {
                        delivered.Add(report);
                    }
                }
            });
        }

        var pending = producer.Flush(Patience);
        Assert.Equal(0, pending);
        Assert.Empty(errors);
        Assert.All(delivered, d => Assert.Equal(PersistenceStatus.Persisted, d.Status));
        return delivered;
    }

    private static List<ConsumeResult<string, string>> ConsumeUntil(
        IConsumer<string, string> consumer, int count, CancellationToken cancellationToken)
    {
        var results = new List<ConsumeResult<string, string>>(count);
        var deadline = DateTime.UtcNow + Patience;
        while (results.Count < count)
        {
            if (DateTime.UtcNow > deadline)
            {
                Assert.Fail($"consumed {results.Count} of {count} messages within {Patience.TotalSeconds} s");
            }

            var result = consumer.Consume(TimeSpan.FromMilliseconds(500));
            cancellationToken.ThrowIfCancellationRequested();
            if (result is not null && !result.IsPartitionEOF)
            {
                results.Add(result);
            }
        }

        return results;
    }
}
