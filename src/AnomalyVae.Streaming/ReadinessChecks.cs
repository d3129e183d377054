using System.Text.Json;
using AnomalyVae.Storage;
using Confluent.Kafka;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace AnomalyVae.Streaming;

/// <summary>
/// serve's readiness (GET /readyz) on ASP.NET Core's health checks: every detector has a model and runs, PostgreSQL
/// answers, a Kafka broker answers. The body stays the JSON documented in docs/streaming.md.
/// </summary>
public static class ReadinessChecks
{
    public const string Tag = "ready";

    private const string ProblemsKey = "problems";
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(3);

    public static void Add(IServiceCollection services) =>
        services.AddHealthChecks()
            .AddCheck<DetectorsCheck>("detectors", tags: [Tag], timeout: Timeout)
            .AddCheck<PostgresCheck>("postgres", tags: [Tag], timeout: Timeout)
            .AddCheck<KafkaCheck>("kafka", tags: [Tag], timeout: Timeout);

    /// <summary>{ ready, detectors: [...], problems: [...] }; a check that timed out reports its component.</summary>
    public static Task WriteAsync(HttpContext context, HealthReport report)
    {
        var problems = new List<string>();
        foreach (var (name, entry) in report.Entries)
        {
            if (entry.Data.TryGetValue(ProblemsKey, out var listed) && listed is IEnumerable<string> lines)
                problems.AddRange(lines);
            else if (entry.Status == HealthStatus.Unhealthy)
                problems.Add($"{name}: {entry.Description ?? entry.Exception?.Message ?? "unhealthy"}");
        }
        var detectors = context.RequestServices.GetRequiredService<DetectorSet>();
        var health = context.RequestServices.GetRequiredService<ServiceHealth>();
        var body = JsonSerializer.Serialize(new
        {
            ready = problems.Count == 0,
            detectors = detectors.Detectors.Select(d => new
            {
                name = d.Name,
                model_version = d.Current?.Version,
                threshold = d.Current?.Threshold,
                model_registry = d.RegistryName,
                // An activated registry version that did not load: reported, not a readiness problem, because the
                // detector keeps scoring with the version it has.
                model_problem = d.ModelProblem,
                partitions = health.Assignments.GetValueOrDefault(d.Name, []),
            }),
            problems,
        });
        context.Response.ContentType = "application/json";
        return context.Response.WriteAsync(body);
    }

    private static HealthCheckResult Result(List<string> problems) => problems.Count == 0
        ? HealthCheckResult.Healthy()
        : HealthCheckResult.Unhealthy(string.Join("; ", problems), data: new Dictionary<string, object> { [ProblemsKey] = problems });

    private sealed class DetectorsCheck(DetectorSet detectors, ServiceHealth health) : IHealthCheck
    {
        public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
        {
            var problems = new List<string>();
            foreach (var detector in detectors.Detectors)
            {
                if (detector.Current is null)
                    problems.Add($"detector '{detector.Name}' has no model loaded yet");
                if (!health.IsRunning(detector.Name))
                    problems.Add($"detector '{detector.Name}' is not running");
            }
            foreach (var (detector, problem) in health.Problems)
                problems.Add($"detector '{detector}': {problem}");
            return Task.FromResult(Result(problems));
        }
    }

    private sealed class PostgresCheck(AnomalyStore store) : IHealthCheck
    {
        public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default) =>
            await store.PingAsync(cancellationToken) ? HealthCheckResult.Healthy() : Result(["PostgreSQL is not reachable"]);
    }

    private sealed class KafkaCheck(DeadLetterProducer producer) : IHealthCheck
    {
        // librdkafka's metadata call blocks; it runs on the pool with its own 2 s limit.
        public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default) =>
            await Task.Run(() => KafkaProblem(producer), cancellationToken) is { } problem ? Result([problem]) : HealthCheckResult.Healthy();

        private static string? KafkaProblem(DeadLetterProducer producer)
        {
            try
            {
                using var admin = new DependentAdminClientBuilder(producer.Handle).Build();
                var metadata = admin.GetMetadata(TimeSpan.FromSeconds(2));
                return metadata.Brokers.Count > 0 ? null : "Kafka: no broker in the metadata";
            }
            catch (KafkaException e)
            {
                return $"Kafka is not reachable: {e.Error.Reason}";
            }
        }
    }
}
