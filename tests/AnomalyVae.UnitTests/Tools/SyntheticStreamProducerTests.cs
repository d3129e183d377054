using AnomalyVae.Streaming;
using AnomalyVae.Tools;

namespace AnomalyVae.UnitTests.Tools;

public sealed class SyntheticStreamProducerTests
{
    [Fact]
    public void Producer_config_adds_throughput_defaults_and_a_finite_delivery_timeout()
    {
        var options = new KafkaOptions { BootstrapServers = "broker:9092" };
        options.Properties["api.version.request"] = "false";

        var config = SyntheticStreamProducer.ProducerConfig(options);

        Assert.Equal("broker:9092", config.BootstrapServers);
        Assert.Equal("false", config.Get("api.version.request"));
        Assert.Equal("5", config.Get("linger.ms"));
        Assert.Equal("10000", config.Get("batch.num.messages"));
        Assert.Equal("500000", config.Get("queue.buffering.max.messages"));
        Assert.Equal("30000", config.Get("message.timeout.ms"));
    }

    [Fact]
    public void Properties_the_user_sets_win_under_either_alias()
    {
        var options = new KafkaOptions();
        options.Properties["queue.buffering.max.ms"] = "50";
        options.Properties["delivery.timeout.ms"] = "120000";
        options.Properties["batch.num.messages"] = "100";

        var config = SyntheticStreamProducer.ProducerConfig(options);

        Assert.Equal("50", config.Get("queue.buffering.max.ms"));
        Assert.Null(config.Get("linger.ms"));
        Assert.Equal("120000", config.Get("delivery.timeout.ms"));
        Assert.Null(config.Get("message.timeout.ms"));
        Assert.Equal("100", config.Get("batch.num.messages"));
    }

    [Fact]
    public async Task Bad_arguments_are_rejected_before_any_connection()
    {
        var config = SyntheticStreamProducer.ProducerConfig(new KafkaOptions());
        await Assert.ThrowsAsync<ArgumentException>(() =>
            SyntheticStreamProducer.ProduceAsync(new SensorStream(), " ", config, new EventPacer(10), null, CancellationToken.None));
        await Assert.ThrowsAsync<ArgumentNullException>(() =>
            SyntheticStreamProducer.ProduceAsync(null!, "t", config, new EventPacer(10), null, CancellationToken.None));
    }
}
