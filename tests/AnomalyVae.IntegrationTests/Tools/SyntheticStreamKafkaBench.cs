using AnomalyVae.IntegrationTests.Infrastructure;
using AnomalyVae.Streaming;
using AnomalyVae.Tools;
using Confluent.Kafka;
using Xunit.Abstractions;

namespace AnomalyVae.IntegrationTests.Tools;

/// <summary>
/// Prints, for the record, how fast generated events reach the test broker through <see cref="SyntheticStreamProducer"/>
/// (every event acknowledged). Asserts only the counts; the rate depends on machine, build and load.
/// </summary>
[Collection(InfrastructureCollection.Name)]
public sealed class SyntheticStreamKafkaBench(TestInfrastructure infrastructure, ITestOutputHelper output)
{
    private const int Events = 200_000;

    [Fact]
    public async Task Sensor_events_per_second_to_a_four_partition_topic()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        var topic = await infrastructure.CreateTopicAsync("generated-bench", partitions: 4, cts.Token);
        var config = SyntheticStreamProducer.ProducerConfig(infrastructure.KafkaOptions());

        var summary = await SyntheticStreamProducer.ProduceAsync(new SensorStream(seed: 3), topic, config, new EventPacer(Events), null, cts.Token);

        output.WriteLine($"sensors to Kafka ({topic}, 4 partitions): {summary}");
        Assert.Equal(Events, summary.Events);
        using var consumer = new ConsumerBuilder<Ignore, Ignore>(infrastructure.ConsumerConfig("bench")).Build();
        long total = 0;
        for (var p = 0; p < 4; p++)
            total += consumer.QueryWatermarkOffsets(new TopicPartition(topic, p), TimeSpan.FromSeconds(10)).High.Value;
        Assert.Equal(Events, total);
    }
}
