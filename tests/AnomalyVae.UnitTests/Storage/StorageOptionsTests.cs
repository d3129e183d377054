using AnomalyVae.Storage;
using AnomalyVae.Streaming;
using Microsoft.Extensions.Configuration;

namespace AnomalyVae.UnitTests.Storage;

public class StorageOptionsTests
{
    private static readonly Dictionary<string, string?> Valid = new()
    {
        ["Detectors:0:Name"] = "d",
        ["Detectors:0:Topic"] = "t",
        ["Detectors:0:Model"] = "m.onnx",
        ["Postgres:ConnectionString"] = "Host=x",
    };

    private static ServiceOptions Bind(params (string Key, string Value)[] settings)
    {
        var values = new Dictionary<string, string?>(Valid);
        foreach (var (key, value) in settings)
            values[key] = value;
        return ServiceOptions.Bind(new ConfigurationBuilder().AddInMemoryCollection(values).Build());
    }

    [Fact]
    public void RetentionIsUnsetByDefaultAndBindsPerTable()
    {
        var defaults = Bind();
        Assert.Null(defaults.Storage.Retention.Anomalies);
        Assert.Null(defaults.Storage.Retention.ScoringStats);
        Assert.Equal(7, defaults.Storage.PartitionsAhead);

        var set = Bind(("Storage:Retention:Anomalies", "30.00:00:00"), ("Storage:Retention:ScoringStats", "90.00:00:00"),
            ("Storage:PartitionsAhead", "14"), ("Storage:MaintenanceInterval", "00:10:00"));
        Assert.Equal(TimeSpan.FromDays(30), set.Storage.Retention.Anomalies);
        Assert.Equal(TimeSpan.FromDays(90), set.Storage.Retention.ScoringStats);
        Assert.Equal(14, set.Storage.PartitionsAhead);
        Assert.Equal(TimeSpan.FromMinutes(10), set.Storage.MaintenanceInterval);
    }

    [Theory]
    [InlineData("Storage:Retention:Anomalies", "12:00:00")]
    [InlineData("Storage:Retention:ScoringStats", "00:00:00")]
    [InlineData("Storage:PartitionsAhead", "0")]
    [InlineData("Storage:MaintenanceInterval", "00:00:10")]
    public void SettingsThatWouldDropTodaysPartitionOrStarveMaintenanceAreRefused(string key, string value)
    {
        var e = Assert.Throws<ServiceConfigurationException>(() => Bind((key, value)));
        Assert.Contains(key, e.Message);
    }
}
