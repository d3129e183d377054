using AnomalyVae.Streaming;
using Confluent.Kafka;
using Microsoft.Extensions.Configuration;

namespace AnomalyVae.UnitTests.Streaming;

public sealed class KafkaOptionsTests
{
    private static KafkaOptions Bind(Dictionary<string, string?> values)
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(values).Build();
        var options = new KafkaOptions();
        configuration.GetSection(KafkaOptions.SectionName).Bind(options);
        return options;
    }

    [Fact]
    public void Properties_from_configuration_reach_the_consumer_config_verbatim()
    {
        var options = Bind(new()
        {
            ["Kafka:BootstrapServers"] = "broker-a:9093,broker-b:9093",
            ["Kafka:GroupId"] = "scoring",
            ["Kafka:Properties:api.version.request"] = "false",
            ["Kafka:Properties:broker.version.fallback"] = "0.9.0.1",
            ["Kafka:Properties:session.timeout.ms"] = "10000",
        });

        var config = options.ToConsumerConfig();

        Assert.Equal("broker-a:9093,broker-b:9093", config.BootstrapServers);
        Assert.Equal("scoring", config.GroupId);
        Assert.Equal("false", config.Get("api.version.request"));
        Assert.Equal("0.9.0.1", config.Get("broker.version.fallback"));
        Assert.Equal(10000, config.SessionTimeoutMs);
    }

    [Fact]
    public void Producer_config_gets_the_properties_and_no_group_id()
    {
        var options = new KafkaOptions { BootstrapServers = "127.0.0.1:19092" };
        options.Properties["api.version.request"] = "false";
        options.Properties["compression.type"] = "lz4";

        var config = options.ToProducerConfig();

        Assert.Equal("127.0.0.1:19092", config.BootstrapServers);
        Assert.Equal("false", config.Get("api.version.request"));
        Assert.Equal(CompressionType.Lz4, config.CompressionType);
        Assert.Null(config.Get("group.id"));
    }

    [Fact]
    public void Properties_override_the_typed_settings()
    {
        var options = new KafkaOptions { BootstrapServers = "typed:9092", GroupId = "typed" };
        options.Properties["bootstrap.servers"] = "from-properties:9092";
        options.Properties["group.id"] = "from-properties";

        var config = options.ToConsumerConfig();

        Assert.Equal("from-properties:9092", config.BootstrapServers);
        Assert.Equal("from-properties", config.GroupId);
    }

    [Fact]
    public void Defaults_point_at_the_local_broker()
    {
        var config = Bind([]).ToConsumerConfig();

        Assert.Equal("127.0.0.1:9092", config.BootstrapServers);
        Assert.Equal("anomalyvae", config.GroupId);
    }

    [Fact]
    public void Empty_bootstrap_servers_is_a_clear_error()
    {
        var options = new KafkaOptions { BootstrapServers = " " };

        var error = Assert.Throws<InvalidOperationException>(options.ToProducerConfig);
        Assert.Contains("Kafka:BootstrapServers", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Property_without_a_value_is_a_clear_error()
    {
        var options = Bind(new() { ["Kafka:Properties:session.timeout.ms"] = "" });

        var error = Assert.Throws<InvalidOperationException>(options.ToConsumerConfig);
        Assert.Contains("session.timeout.ms", error.Message, StringComparison.Ordinal);
    }
}
