using System.Diagnostics;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using OpenTelemetry.Exporter;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;

namespace AnomalyVae.Streaming;

/// <summary>
/// serve's traces and their OTLP export (OpenTelemetry SDK). Each micro-batch is one trace: "consume" (the root),
/// then "score" and "commit" with Npgsql's spans of the transaction under it. Without an OTLP endpoint nothing
/// listens and no span is created; /metrics (Prometheus text) is served either way.
/// </summary>
public static class Telemetry
{
    public const string SourceName = "AnomalyVae.Streaming";

    public static readonly ActivitySource Source = new(SourceName);

    /// <summary>Adds OTLP export of serve's metrics and traces when Telemetry:OtlpEndpoint is set.</summary>
    public static void Add(IServiceCollection services, TelemetryOptions options)
    {
        if (string.IsNullOrWhiteSpace(options.OtlpEndpoint))
            return;
        var grpc = options.OtlpProtocol == "grpc";
        var endpoint = options.OtlpEndpoint.TrimEnd('/');
        // OTLP/HTTP posts each signal to its own path; gRPC takes the collector's address as it is.
        void Exporter(OtlpExporterOptions o, string signal)
        {
            o.Protocol = grpc ? OtlpExportProtocol.Grpc : OtlpExportProtocol.HttpProtobuf;
            o.Endpoint = new Uri(grpc ? endpoint : $"{endpoint}/v1/{signal}");
        }
        services.AddOpenTelemetry()
            .ConfigureResource(r => r.AddService("anomalyvae-serve", serviceVersion: BuildInfo.Current.Version))
            .WithMetrics(metrics => metrics
                .AddMeter(ServiceMetrics.MeterName)
                .AddOtlpExporter((exporter, reader) =>
                {
                    Exporter(exporter, "metrics");
                    reader.PeriodicExportingMetricReaderOptions.ExportIntervalMilliseconds = options.MetricsIntervalSeconds * 1000;
                }))
            .WithTracing(tracing => tracing
                .AddSource(SourceName)
                .AddNpgsql()
                .AddOtlpExporter(exporter => Exporter(exporter, "traces")));
    }
}
