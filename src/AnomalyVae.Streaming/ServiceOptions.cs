using System.Globalization;
using System.Text.RegularExpressions;
using AnomalyVae.Events;
using AnomalyVae.Retraining;
using AnomalyVae.Storage;
using Microsoft.Extensions.Configuration;

namespace AnomalyVae.Streaming;

/// <summary>A configuration or start-up problem (bad key, unloadable model): the service refuses to start.</summary>
public sealed class ServiceConfigurationException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>Where a detector starts reading a partition that has no offset stored in PostgreSQL yet.</summary>
public enum StartFrom
{
    Earliest,
    Latest,
}

/// <summary>One deployed model: a topic scored by a model (section <c>Detectors[i]</c>).</summary>
public sealed class DetectorOptions
{
    /// <summary>Unique name; used in table rows, metrics and the consumer group.</summary>
    public string Name { get; set; } = "";

    public string Topic { get; set; } = "";

    /// <summary>The model: a file path, or a name in the model registry whose active version the detector follows
    /// (see <see cref="RegistryName"/> for the rule).</summary>
    public string Model { get; set; } = "";

    /// <summary>Topic for events that cannot be scored; default "&lt;Topic&gt;.dlq".</summary>
    public string? DeadLetterTopic { get; set; }

    public string? EntityField { get; set; }

    public string? TimestampField { get; set; }

    /// <summary>Score threshold overriding the model's calibrated one.</summary>
    public double? Threshold { get; set; }

    /// <summary>Consumer group; default "&lt;Kafka:GroupId&gt;.&lt;Name&gt;" so that two detectors on one topic
    /// each see every partition.</summary>
    public string? GroupId { get; set; }

    public StartFrom StartFrom { get; set; } = StartFrom.Earliest;

    /// <summary>Anomalies of one entity at most this far apart (by event time) form one incident; an incident closes
    /// when the detector's clock passes its last anomaly + this gap. 00:00:00 turns incidents off.</summary>
    public TimeSpan IncidentGap { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>The gap serve uses: zero (incidents off) without an <see cref="EntityField"/>, since an anomaly without
    /// an entity belongs to no incident and the incident writes would only cost.</summary>
    /// <summary>Where this detector's incidents are published (Kafka topic, Alertmanager).</summary>
    public DetectorAlertOptions Alerts { get; set; } = new();

    public TimeSpan IncidentGapInEffect => string.IsNullOrEmpty(EntityField) ? TimeSpan.Zero : IncidentGap;

    /// <summary>
    /// The registry name <see cref="Model"/> stands for, or null when it is a file. It is a file when it names an existing
    /// file, ends in ".onnx" or cannot be a registry name (e.g. holds a '/'); otherwise it is a detector name in the
    /// <c>models</c> table and the detector follows that name's active version.
    /// </summary>
    public string? RegistryName =>
        File.Exists(Model) || Model.EndsWith(".onnx", StringComparison.OrdinalIgnoreCase) || !ModelRegistry.IsDetectorName(Model)
            ? null
            : Model;

    public string ResolvedDeadLetterTopic => string.IsNullOrWhiteSpace(DeadLetterTopic) ? Topic + ".dlq" : DeadLetterTopic;
}

/// <summary>Micro-batching and ONNX Runtime settings (section <c>Scoring</c>).</summary>
public sealed class ScoringOptions
{
    /// <summary>4096 by default: each batch commits in one PostgreSQL transaction of a few milliseconds, so larger
    /// batches amortize it (measured per million events: 4.2 s of commits at 1024, 2.4 s at 4096). At low rates a
    /// batch still closes <see cref="BatchTimeoutMs"/> after its first event.</summary>
    public int BatchSize { get; set; } = 4096;

    public int BatchTimeoutMs { get; set; } = 50;

    /// <summary>ONNX Runtime intra-op threads per detector; 0 lets ORT choose. 1 by default: a micro-batch is too
    /// small to split, and ORT's pool threads spin between runs (measured: 8.8 → 5.2 µs CPU per event in serve).</summary>
    public int IntraOpThreads { get; set; } = 1;

    public bool UseCuda { get; set; }

    public int CudaDeviceId { get; set; }

    /// <summary>Larger payloads are dead-lettered as "oversized" without parsing.</summary>
    public int MaxPayloadBytes { get; set; } = EventDecoder.DefaultMaxPayloadBytes;

    /// <summary>Width of a <c>scoring_stats</c> window.</summary>
    public int StatsWindowSeconds { get; set; } = 60;

    /// <summary>How long a graceful shutdown may take to finish and commit the in-flight batch.</summary>
    public int ShutdownTimeoutSeconds { get; set; } = 30;

    /// <summary>Entities whose window state a windowed detector keeps in memory (per detector). Beyond it the least
    /// recently seen are evicted (PostgreSQL has their state) and read back on their next event, in one query per
    /// micro-batch. 250,000 by default: about 0.5 KB each at W = 8 and 5 features (docs/streaming.md).</summary>
    public int MaxWindowEntities { get; set; } = 250_000;
}

/// <summary>Section <c>Postgres</c>.</summary>
public sealed class PostgresOptions
{
    public string ConnectionString { get; set; } = "";

    /// <summary>Apply the embedded migrations at start-up.</summary>
    public bool MigrateOnStart { get; set; } = true;
}

/// <summary>Section <c>Http</c>.</summary>
public sealed class HttpOptions
{
    /// <summary>Port of /healthz, /readyz and /metrics; 0 disables HTTP.</summary>
    public int Port { get; set; } = 8080;
}


/// <summary>Section <c>Telemetry</c>: OpenTelemetry export over OTLP (off unless an endpoint is set).</summary>
public sealed class TelemetryOptions
{
    /// <summary>The collector, e.g. http://otel-collector:4318 (OTLP/HTTP) or :4317 (gRPC); unset = no export.</summary>
    public string? OtlpEndpoint { get; set; }

    /// <summary>"http/protobuf" (default) or "grpc".</summary>
    public string OtlpProtocol { get; set; } = "http/protobuf";

    /// <summary>How often metrics are pushed.</summary>
    public int MetricsIntervalSeconds { get; set; } = 15;
}

/// <summary>The whole service configuration, bound and validated once at start-up.</summary>
public sealed partial class ServiceOptions
{
    public List<DetectorOptions> Detectors { get; } = [];

    public ScoringOptions Scoring { get; } = new();

    public PostgresOptions Postgres { get; } = new();

    public HttpOptions Http { get; } = new();

    public RetrainingOptions Retraining { get; } = new();

    public TelemetryOptions Telemetry { get; } = new();

    public StorageOptions Storage { get; } = new();
    public AlertmanagerOptions Alertmanager { get; } = new();

    /// <summary>Binds the sections and checks them; every problem is listed in one exception.</summary>
    public static ServiceOptions Bind(IConfiguration configuration)
    {
        var options = new ServiceOptions();
        try
        {
            configuration.GetSection("Detectors").Bind(options.Detectors);
            configuration.GetSection("Scoring").Bind(options.Scoring);
            configuration.GetSection("Postgres").Bind(options.Postgres);
            configuration.GetSection("Http").Bind(options.Http);
            configuration.GetSection("Retraining").Bind(options.Retraining);
            configuration.GetSection("Telemetry").Bind(options.Telemetry);
            configuration.GetSection(StorageOptions.SectionName).Bind(options.Storage);
            configuration.GetSection("Alertmanager").Bind(options.Alertmanager);
        }
        catch (InvalidOperationException e)
        {
            // The binder's message names the key and the value it could not convert.
            throw new ServiceConfigurationException($"Invalid configuration: {e.Message}", e);
        }
        options.Validate();
        return options;
    }

    public void Validate()
    {
        var problems = new List<string>();
        if (Detectors.Count == 0)
            problems.Add("Detectors: no detector is configured (Detectors:0:Name, :Topic, :Model).");
        var names = new HashSet<string>(StringComparer.Ordinal);
        for (int i = 0; i < Detectors.Count; i++)
        {
            var d = Detectors[i];
            string at = $"Detectors:{i}";
            if (string.IsNullOrWhiteSpace(d.Name))
                problems.Add($"{at}:Name is empty.");
            else if (!NamePattern().IsMatch(d.Name))
                problems.Add($"{at}:Name '{d.Name}' must be 1-100 characters of a-z, A-Z, 0-9, '.', '_', '-'.");
            else if (!names.Add(d.Name))
                problems.Add($"{at}:Name '{d.Name}' is used by two detectors.");
            if (string.IsNullOrWhiteSpace(d.Topic))
                problems.Add($"{at}:Topic is empty.");
            if (string.IsNullOrWhiteSpace(d.Model))
                problems.Add($"{at}:Model is empty (an ONNX model file, or a name in the model registry).");
            if (d.Threshold is { } t && !double.IsFinite(t))
                problems.Add($"{at}:Threshold must be a finite number.");
            if (!string.IsNullOrWhiteSpace(d.Topic) && d.ResolvedDeadLetterTopic == d.Topic)
                problems.Add($"{at}:DeadLetterTopic must differ from Topic.");
            if (d.IncidentGap < TimeSpan.Zero || d.IncidentGap > TimeSpan.FromDays(30))
                problems.Add($"{at}:IncidentGap must be between 00:00:00 (off) and 30.00:00:00.");
            if (d.Alerts.Topic is { } alertTopic && (string.IsNullOrWhiteSpace(alertTopic) || alertTopic == d.Topic || alertTopic == d.ResolvedDeadLetterTopic))
                problems.Add($"{at}:Alerts:Topic must be a topic name other than Topic and DeadLetterTopic.");
            if (d.EntityField is not null && d.EntityField == d.TimestampField)
                problems.Add($"{at}: EntityField and TimestampField are both '{d.EntityField}'.");
        }
        Check(problems, Scoring.BatchSize, 1, 65_536, "Scoring:BatchSize");
        Check(problems, Scoring.BatchTimeoutMs, 1, 60_000, "Scoring:BatchTimeoutMs");
        Check(problems, Scoring.IntraOpThreads, 0, 1024, "Scoring:IntraOpThreads");
        Check(problems, Scoring.CudaDeviceId, 0, 1024, "Scoring:CudaDeviceId");
        Check(problems, Scoring.MaxPayloadBytes, 2, 64 << 20, "Scoring:MaxPayloadBytes");
        Check(problems, Scoring.StatsWindowSeconds, 1, 86_400, "Scoring:StatsWindowSeconds");
        Check(problems, Scoring.ShutdownTimeoutSeconds, 1, 3600, "Scoring:ShutdownTimeoutSeconds");
        Check(problems, Scoring.MaxWindowEntities, 1, 100_000_000, "Scoring:MaxWindowEntities");
        Check(problems, Http.Port, 0, 65_535, "Http:Port");
        Check(problems, Telemetry.MetricsIntervalSeconds, 1, 3600, "Telemetry:MetricsIntervalSeconds");
        if (Telemetry.OtlpProtocol is not ("http/protobuf" or "grpc"))
            problems.Add("Telemetry:OtlpProtocol must be \"http/protobuf\" or \"grpc\".");
        if (Telemetry.OtlpEndpoint is { Length: > 0 } endpoint && !Uri.TryCreate(endpoint, UriKind.Absolute, out _))
            problems.Add("Telemetry:OtlpEndpoint must be an absolute URL, e.g. http://otel-collector:4318.");
        Check(problems, Retraining.SampleSize, 0, 10_000_000, "Retraining:SampleSize");
        Check(problems, Retraining.RecentSize, 0, 10_000_000, "Retraining:RecentSize");
        CheckRate(problems, Retraining.SampleRate, "Retraining:SampleRate");
        CheckRate(problems, Retraining.RecentRate, "Retraining:RecentRate");
        if (Retraining.SampleRate + Retraining.RecentRate > 1)
            problems.Add("Retraining:SampleRate + Retraining:RecentRate must not exceed 1 (an event goes to at most one sample).");
        problems.AddRange(Retraining.DriftProblems());
        if (Retraining.Interval is { } interval && interval < TimeSpan.FromMinutes(1))
            problems.Add("Retraining:Interval must be at least 00:01:00 when set.");
        if (Retraining.CheckInterval < TimeSpan.FromSeconds(1))
            problems.Add("Retraining:CheckInterval must be at least 00:00:01.");
        if (Retraining.DriftCooldown < TimeSpan.Zero)
            problems.Add("Retraining:DriftCooldown must not be negative.");
        problems.AddRange(Retraining.Gates.Problems());
        problems.AddRange(Storage.Problems());
        problems.AddRange(Alertmanager.Problems());
        if (string.IsNullOrWhiteSpace(Postgres.ConnectionString))
            problems.Add("Postgres:ConnectionString is empty.");
        if (problems.Count > 0)
            throw new ServiceConfigurationException("Invalid configuration: " + string.Join(" ", problems));
    }

    private static void Check(List<string> problems, int value, int min, int max, string key)
    {
        if (value < min || value > max)
            problems.Add(string.Create(CultureInfo.InvariantCulture, $"{key} is {value}; it must be between {min} and {max}."));
    }

    private static void CheckRate(List<string> problems, double value, string key)
    {
        if (!(value >= 0 && value <= 1))
            problems.Add(string.Create(CultureInfo.InvariantCulture, $"{key} is {value}; it must be between 0 and 1."));
    }

    [GeneratedRegex("^[A-Za-z0-9._-]{1,100}$")]
    private static partial Regex NamePattern();
}
