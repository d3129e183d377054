using System.Text.Json;
using AnomalyVae.Storage;
using AnomalyVae.Streaming;
using AnomalyVae.UnitTests.Model;
using Microsoft.Extensions.Configuration;

namespace AnomalyVae.UnitTests.Streaming;

/// <summary>Alert records against schemas/alert.schema.json, their dedup keys, severities, and the alert settings.</summary>
public sealed class AlertTests
{
    private static readonly SchemaValidator Schema = SchemaValidator.ForFile("alert.schema.json");
    private static readonly DateTime T0 = new(2026, 3, 1, 12, 0, 0, DateTimeKind.Utc);

    private static IncidentTransition Transition(IncidentTransitionKind kind, DateTime? closedAt = null) =>
        new(kind, "sensors", "machine/7 \"α\"", "events", 3, 12345, T0, T0.AddMinutes(2), closedAt, 40, 812.5, 2e-7,
            [new("temp", 500), new("rpm", 20.5), new("vibration", 1)]);

    [Fact]
    public void Incident_records_match_the_schema_and_carry_a_key_from_the_first_events_coordinates()
    {
        foreach (var (kind, closed) in new[] { (IncidentTransitionKind.Opened, (DateTime?)null), (IncidentTransitionKind.Closed, T0.AddMinutes(7)) })
        {
            using var record = JsonDocument.Parse(AlertRecord.ForIncident(Transition(kind, closed), "critical", T0.AddHours(1)));
            var root = record.RootElement;
            Assert.Empty(Schema.Validate(root));
            string name = kind == IncidentTransitionKind.Opened ? "incident_opened" : "incident_closed";
            Assert.Equal($"sensors:events:3:12345:{name}", root.GetProperty("dedup_key").GetString());
            Assert.Equal(name, root.GetProperty("kind").GetString());
            Assert.Equal("machine/7 \"α\"", root.GetProperty("entity").GetString());
            Assert.Equal(12345, root.GetProperty("source").GetProperty("offset").GetInt64());
            Assert.Equal(["temp", "rpm", "vibration"], root.GetProperty("top_features").EnumerateArray().Select(f => f.GetProperty("feature").GetString()));
            Assert.Equal(closed is null ? JsonValueKind.Null : JsonValueKind.String, root.GetProperty("closed_at").ValueKind);
            Assert.Equal("2026-03-01T12:00:00.0000000Z", root.GetProperty("first_at").GetString());
        }
    }

    [Fact]
    public void Anomaly_records_match_the_schema_and_keep_the_first_three_features()
    {
        var batch = new BatchRecord("sensors", "events");
        batch.Partitions.Add(0);
        batch.Offsets.Add(9);
        batch.Entities.Add(null);
        batch.EventTimes.Add(null);
        batch.Scores.Add(31.5);
        batch.PValues.Add(0.002);
        batch.Contributions.Add("""[{"feature":"a","score":20},{"feature":"b","score":null},{"feature":"c","score":5},{"feature":"d","score":1},{"feature":"e","score":0.5}]""");
        using var record = JsonDocument.Parse(AlertRecord.ForAnomaly(batch, 0, "info", T0));
        var root = record.RootElement;
        Assert.Empty(Schema.Validate(root));
        Assert.Equal("sensors:events:0:9:anomaly", root.GetProperty("dedup_key").GetString());
        Assert.Equal(JsonValueKind.Null, root.GetProperty("entity").ValueKind);
        // The first three contributions, the one without a score left out.
        Assert.Equal(["a", "c"], root.GetProperty("top_features").EnumerateArray().Select(f => f.GetProperty("feature").GetString()));
    }

    [Theory]
    [InlineData("""{"kind":"anomaly"}""")]
    [InlineData("""{"kind":"anomaly","anomaly_count":3}""")]
    [InlineData("""{"kind":"incident_closed","entity":null}""")]
    [InlineData("""{"dedup_key":"sensors:events:3:12345"}""")]
    [InlineData("""{"severity":"page"}""")]
    public void The_schema_refuses_records_that_break_it(string change)
    {
        using var valid = JsonDocument.Parse(AlertRecord.ForIncident(Transition(IncidentTransitionKind.Opened), "warning", T0));
        var merged = JsonSerializer.Deserialize<Dictionary<string, JsonElement>>(valid.RootElement.GetRawText())!;
        foreach (var (key, value) in JsonSerializer.Deserialize<Dictionary<string, JsonElement>>(change)!)
            merged[key] = value;
        using var broken = JsonDocument.Parse(JsonSerializer.Serialize(merged));
        Assert.NotEmpty(Schema.Validate(broken.RootElement));
    }

    [Theory]
    [InlineData(1e-9, "critical")]
    [InlineData(1e-6, "critical")]
    [InlineData(5e-5, "warning")]
    [InlineData(1e-4, "warning")]
    [InlineData(0.01, "info")]
    public void Severity_comes_from_the_smallest_p_value(double pValue, string severity) =>
        Assert.Equal(severity, new AlertmanagerOptions().Severity(pValue));

    private static ServiceOptions Bind(params (string Key, string Value)[] values) => ServiceOptions.Bind(new ConfigurationBuilder()
        .AddInMemoryCollection(new (string, string)[]
        {
            ("Postgres:ConnectionString", "Host=db"), ("Detectors:0:Name", "sensors"), ("Detectors:0:Topic", "sensors"),
            ("Detectors:0:Model", "models/sensors.onnx"),
        }.Concat(values).Select(v => new KeyValuePair<string, string?>(v.Item1, v.Item2))).Build());

    [Fact]
    public void Alert_settings_bind_with_their_defaults()
    {
        var defaults = Bind();
        Assert.Equal((null, false, true), (defaults.Detectors[0].Alerts.Topic, defaults.Detectors[0].Alerts.EveryAnomaly, defaults.Detectors[0].Alerts.Alertmanager));
        Assert.Null(defaults.Alertmanager.Url);
        Assert.Equal((1000, TimeSpan.FromMinutes(1), 3), (defaults.Alertmanager.QueueCapacity, defaults.Alertmanager.ResendInterval, defaults.Alertmanager.MaxRetries));

        var set = Bind(("Detectors:0:Alerts:Topic", "sensors.alerts"), ("Detectors:0:Alerts:EveryAnomaly", "true"), ("Detectors:0:Alerts:Alertmanager", "false"),
            ("Alertmanager:Url", "http://am:9093"), ("Alertmanager:QueueCapacity", "50"), ("Alertmanager:ResendInterval", "00:00:30"));
        Assert.Equal(("sensors.alerts", true, false), (set.Detectors[0].Alerts.Topic, set.Detectors[0].Alerts.EveryAnomaly, set.Detectors[0].Alerts.Alertmanager));
        Assert.Equal(("http://am:9093", 50, TimeSpan.FromSeconds(30)), (set.Alertmanager.Url, set.Alertmanager.QueueCapacity, set.Alertmanager.ResendInterval));
    }

    [Theory]
    [InlineData("Detectors:0:Alerts:Topic", "sensors", "Alerts:Topic must be a topic name other than Topic")]
    [InlineData("Detectors:0:Alerts:Topic", "sensors.dlq", "Alerts:Topic must be a topic name other than Topic")]
    [InlineData("Alertmanager:Url", "am:9093", "Alertmanager:Url must be an absolute http(s) URL")]
    [InlineData("Alertmanager:QueueCapacity", "0", "Alertmanager:QueueCapacity is 0")]
    [InlineData("Alertmanager:ResendInterval", "00:00:00", "Alertmanager:ResendInterval must be at least")]
    [InlineData("Alertmanager:CriticalPValue", "0.5", "Alertmanager:CriticalPValue and WarningPValue")]
    public void Bad_alert_settings_are_refused_with_the_key(string key, string value, string message)
    {
        var e = Assert.Throws<ServiceConfigurationException>(() => Bind((key, value)));
        Assert.Contains(message, e.Message, StringComparison.Ordinal);
    }
}
