using System.Text.Json;
using AnomalyVae.IntegrationTests.Infrastructure;
using AnomalyVae.Model;
using AnomalyVae.Streaming;
using AnomalyVae.Tools;
using Confluent.Kafka;

namespace AnomalyVae.IntegrationTests.Tools;

/// <summary>Generated events through <see cref="SyntheticStreamProducer"/> (what <c>anomalyvae generate --topic</c> runs) and back.</summary>
[Collection(InfrastructureCollection.Name)]
public sealed class SyntheticStreamKafkaTests(TestInfrastructure infrastructure)
{
    private const int Events = 20_000;
    private const long Seed = 5;
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task Every_sensor_event_arrives_once_keyed_by_machine_on_one_partition_in_order()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        var topic = await infrastructure.CreateTopicAsync("generated", partitions: 4, cts.Token);
        var config = SyntheticStreamProducer.ProducerConfig(infrastructure.KafkaOptions());

        var labelsText = new StringWriter();
        StreamSummary summary;
        using (var labels = new CsvWriter(labelsText))
        {
            summary = await SyntheticStreamProducer.ProduceAsync(new SensorStream(Seed), topic, config, new EventPacer(Events), labels, cts.Token);
        }

        // What the same seed generates, for comparison.
        var expected = new Dictionary<string, (string Machine, int Label, string Kind)>(StringComparer.Ordinal);
        var generator = new SensorStream(Seed);
        for (var i = 0; i < Events; i++)
        {
            generator.Next();
            expected.Add(generator.EventId.ToString(), (generator.EntityId, generator.Label, generator.AnomalyKind));
        }

        Assert.Equal(Events, summary.Events);
        Assert.Equal(expected.Values.Sum(e => e.Label), summary.Anomalies);
        Assert.True(summary.Anomalies > 0);

        // The side file has every event's label, in production order.
        using (var reader = new CsvReader(new StringReader(labelsText.ToString())))
        {
            Assert.Equal(SyntheticStream.LabelsHeader, reader.Header);
            var rows = 0;
            while (reader.ReadRecord())
            {
                var e = expected[reader.GetString(0)];
                Assert.Equal(e.Label.ToString(System.Globalization.CultureInfo.InvariantCulture), reader.GetString(1));
                Assert.Equal(e.Kind, reader.GetString(2));
                rows++;
            }

            Assert.Equal(Events, rows);
        }

        var seen = new HashSet<string>(StringComparer.Ordinal);
        var partitionOfMachine = new Dictionary<string, int>(StringComparer.Ordinal);
        var lastSequenceOfMachine = new Dictionary<string, long>(StringComparer.Ordinal);
        using var consumer = new ConsumerBuilder<string, byte[]>(infrastructure.ConsumerConfig($"generated-{Guid.NewGuid():N}")).Build();
        consumer.Subscribe(topic);
        var deadline = DateTime.UtcNow + Patience;
        while (seen.Count < Events)
        {
            Assert.True(DateTime.UtcNow < deadline, $"consumed {seen.Count} of {Events} events within {Patience.TotalSeconds} s");
            var result = consumer.Consume(TimeSpan.FromMilliseconds(500));
            cts.Token.ThrowIfCancellationRequested();
            if (result is null || result.IsPartitionEOF)
                continue;

            using var json = JsonDocument.Parse(result.Message.Value);
            var eventId = json.RootElement.GetProperty("event_id").GetString()!;
            var machine = json.RootElement.GetProperty("machine_id").GetString()!;
            Assert.True(seen.Add(eventId), $"event {eventId} arrived twice");
            Assert.True(expected.TryGetValue(eventId, out var e), $"event {eventId} was never generated");
            Assert.Equal(e.Machine, machine);
            Assert.Equal(machine, result.Message.Key);
            Assert.False(json.RootElement.TryGetProperty("label", out _));
            Assert.False(json.RootElement.TryGetProperty("anomaly_kind", out _));

            // One partition per machine, and a machine's readings in the order they were generated.
            Assert.Equal(partitionOfMachine.GetValueOrDefault(machine, result.Partition.Value), result.Partition.Value);
            partitionOfMachine[machine] = result.Partition.Value;
            var sequence = long.Parse(eventId.AsSpan(eventId.IndexOf('-', StringComparison.Ordinal) + 1), System.Globalization.CultureInfo.InvariantCulture);
            Assert.True(sequence > lastSequenceOfMachine.GetValueOrDefault(machine), $"{eventId} arrived after a later reading of {machine}");
            lastSequenceOfMachine[machine] = sequence;
        }

        consumer.Close();
        Assert.Equal(SensorStream.DefaultMachines, partitionOfMachine.Count);
        Assert.True(partitionOfMachine.Values.Distinct().Count() > 1, "50 machines all hashed to one partition");
    }

    [Fact]
    public async Task A_missing_topic_fails_at_once_with_a_clear_error()
    {
        // The test broker (deploy/local/kafka.sh) does not auto-create topics.
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(1));
        var topic = $"missing-{Guid.NewGuid():N}";
        var config = SyntheticStreamProducer.ProducerConfig(infrastructure.KafkaOptions());
        var error = await Assert.ThrowsAsync<KafkaException>(() =>
            SyntheticStreamProducer.ProduceAsync(new TransactionStream(), topic, config, new EventPacer(100), null, cts.Token));
        Assert.Contains($"topic '{topic}' does not exist", error.Message, StringComparison.Ordinal);
    }
}
