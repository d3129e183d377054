using AnomalyVae.Streaming;
using Microsoft.Extensions.Configuration;

namespace AnomalyVae.UnitTests.Streaming;

/// <summary>Configuration binding of <c>serve</c>: the issue's keys, the defaults, and clear errors.</summary>
public sealed class ServiceOptionsTests
{
    private static ServiceOptions Bind(params (string Key, string Value)[] values) => ServiceOptions.Bind(
        new ConfigurationBuilder().AddInMemoryCollection(values.Select(v => new KeyValuePair<string, string?>(v.Key, v.Value))).Build());

    private static readonly (string, string)[] Minimal =
    [
        ("Postgres:ConnectionString", "Host=db"),
        ("Detectors:0:Name", "sensors"),
        ("Detectors:0:Topic", "sensors"),
        ("Detectors:0:Model", "models/sensors.onnx"),
    ];

    [Fact]
    public void Issue_keys_bind_and_defaults_apply()
    {
        var options = Bind([.. Minimal, ("Detectors:0:DeadLetterTopic", "sensors.bad"), ("Detectors:0:EntityField", "machine_id"),
            ("Detectors:0:TimestampField", "ts"), ("Detectors:0:Threshold", "12.5"), ("Detectors:0:StartFrom", "latest")]);
        var d = Assert.Single(options.Detectors);
        Assert.Equal(("sensors", "sensors", "models/sensors.onnx", "sensors.bad", "machine_id", "ts", 12.5, StartFrom.Latest),
            (d.Name, d.Topic, d.Model, d.ResolvedDeadLetterTopic, d.EntityField, d.TimestampField, d.Threshold, d.StartFrom));
        Assert.Equal((4096, 50, 1, false, 1 << 20, 60, 30), (options.Scoring.BatchSize, options.Scoring.BatchTimeoutMs,
            options.Scoring.IntraOpThreads, options.Scoring.UseCuda, options.Scoring.MaxPayloadBytes, options.Scoring.StatsWindowSeconds,
            options.Scoring.ShutdownTimeoutSeconds));
        Assert.Equal(8080, options.Http.Port);
        Assert.True(options.Postgres.MigrateOnStart);
        Assert.Equal("sensors.dlq", Bind(Minimal).Detectors[0].ResolvedDeadLetterTopic);
    }

    [Fact]
    public void Incident_gap_binds_defaults_to_five_minutes_and_is_off_without_an_entity_field()
    {
        Assert.Equal(TimeSpan.FromMinutes(5), Bind(Minimal).Detectors[0].IncidentGap);
        Assert.Equal(TimeSpan.Zero, Bind(Minimal).Detectors[0].IncidentGapInEffect);
        var d = Bind([.. Minimal, ("Detectors:0:IncidentGap", "00:01:30"), ("Detectors:0:EntityField", "machine_id")]).Detectors[0];
        Assert.Equal((TimeSpan.FromSeconds(90), TimeSpan.FromSeconds(90)), (d.IncidentGap, d.IncidentGapInEffect));
        var off = Bind([.. Minimal, ("Detectors:0:IncidentGap", "00:00:00"), ("Detectors:0:EntityField", "machine_id")]).Detectors[0];
        Assert.Equal(TimeSpan.Zero, off.IncidentGapInEffect);
        foreach (var bad in new[] { "-00:01:00", "31.00:00:00" })
        {
            var e = Assert.Throws<ServiceConfigurationException>(() => Bind([.. Minimal, ("Detectors:0:IncidentGap", bad)]));
            Assert.Contains("Detectors:0:IncidentGap", e.Message, StringComparison.Ordinal);
        }
    }

    [Theory]
    [InlineData("sensors", "sensors")]
    [InlineData("card-payments_v2.x", "card-payments_v2.x")]
    [InlineData("sensors.onnx", null)]
    [InlineData("SENSORS.ONNX", null)]
    [InlineData("models/sensors", null)]
    [InlineData("/abs/model", null)]
    [InlineData("has space", null)]
    public void Model_is_a_registry_name_unless_it_looks_like_a_file(string model, string? registryName) =>
        Assert.Equal(registryName, new DetectorOptions { Model = model }.RegistryName);

    [Fact]
    public void An_existing_file_is_a_file_whatever_its_name()
    {
        var name = $"model-{Guid.NewGuid():N}";
        Assert.Equal(name, new DetectorOptions { Model = name }.RegistryName);
        File.WriteAllBytes(name, [1]);
        try
        {
            Assert.Null(new DetectorOptions { Model = name }.RegistryName);
        }
        finally
        {
            File.Delete(name);
        }
    }

    [Fact]
    public void Every_problem_is_reported_with_its_key()
    {
        var error = Assert.Throws<ServiceConfigurationException>(() => Bind(
            ("Detectors:0:Name", "a b"), ("Detectors:1:Name", "x"), ("Detectors:1:Topic", "t"), ("Detectors:1:DeadLetterTopic", "t"),
            ("Scoring:BatchSize", "0"), ("Http:Port", "70000")));
        foreach (var expected in new[] { "Detectors:0:Name 'a b'", "Detectors:0:Topic is empty", "Detectors:1:Model is empty",
            "Detectors:1:DeadLetterTopic must differ", "Scoring:BatchSize is 0", "Http:Port is 70000", "Postgres:ConnectionString is empty" })
        {
            Assert.Contains(expected, error.Message, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void No_detector_and_duplicate_names_and_unparsable_values_are_errors()
    {
        Assert.Contains("no detector", Assert.Throws<ServiceConfigurationException>(() => Bind(("Postgres:ConnectionString", "Host=db"))).Message,
            StringComparison.Ordinal);
        Assert.Contains("used by two detectors", Assert.Throws<ServiceConfigurationException>(() => Bind([.. Minimal,
            ("Detectors:1:Name", "sensors"), ("Detectors:1:Topic", "x"), ("Detectors:1:Model", "m")])).Message, StringComparison.Ordinal);
        Assert.Contains("BatchSize", Assert.Throws<ServiceConfigurationException>(() => Bind([.. Minimal, ("Scoring:BatchSize", "many")])).Message,
            StringComparison.Ordinal);
    }
}
