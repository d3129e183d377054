using AnomalyVae.Api;
using Microsoft.Extensions.Configuration;

namespace AnomalyVae.UnitTests.Api;

public sealed class DriftSettingsTests
{
    private static IConfiguration Configuration(params (string Key, string Value)[] values) =>
        new ConfigurationBuilder().AddInMemoryCollection(values.Select(v => new KeyValuePair<string, string?>(v.Key, v.Value))).Build();

    [Fact]
    public void The_api_reads_the_retraining_drift_keys_and_defaults_without_them()
    {
        var settings = AnomalyApi.DriftSettings(Configuration(
            ("Retraining:DriftThreshold", "0.3"), ("Retraining:DriftWindow", "00:15:00"), ("Retraining:DriftMinEvents", "100")));
        Assert.Equal((0.3, TimeSpan.FromMinutes(15), 100), (settings.DriftThreshold, settings.DriftWindow, settings.DriftMinEvents));
        var defaults = AnomalyApi.DriftSettings(Configuration());
        Assert.Equal((0.2, TimeSpan.FromHours(1), 500), (defaults.DriftThreshold, defaults.DriftWindow, defaults.DriftMinEvents));
    }

    [Theory]
    [InlineData("Retraining:DriftThreshold", "0", "DriftThreshold")]
    [InlineData("Retraining:DriftThreshold", "NaN", "DriftThreshold")]
    [InlineData("Retraining:DriftWindow", "-00:01:00", "DriftWindow")]
    [InlineData("Retraining:DriftMinEvents", "0", "DriftMinEvents")]
    [InlineData("Retraining:DriftWindow", "an hour", "DriftWindow")]
    public void Bad_drift_keys_stop_the_api_with_the_key_named(string key, string value, string named)
    {
        var e = Assert.Throws<InvalidOperationException>(() => AnomalyApi.DriftSettings(Configuration((key, value))));
        Assert.Contains(named, e.Message, StringComparison.Ordinal);
    }
}
