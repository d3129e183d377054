using AnomalyVae.Inference;
using AnomalyVae.Retraining;
using AnomalyVae.Storage;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Configuration.Memory;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace AnomalyVae.Streaming;

/// <summary>
/// Composition of <c>anomalyvae serve</c>: configuration (appsettings.json, environment variables
/// <c>Section__Key</c>, an optional extra JSON file, command-line <c>--Section:Key=value</c>, in increasing
/// precedence), validated options, the model files (loaded before anything starts), migrations, the registry
/// models (loaded after the migrations, then followed: <see cref="ModelRegistryFollower"/>), one
/// <see cref="DetectorWorker"/> per detector, and the HTTP endpoints /healthz, /readyz and /metrics.
/// </summary>
public static class ServeHost
{
    /// <summary>Builds the host; throws <see cref="ServiceConfigurationException"/> for bad configuration or a
    /// model file that does not load (naming the detector and the file), before anything connects anywhere. A registry
    /// model that is missing or does not load makes the host's StartAsync throw it instead.</summary>
    /// <param name="args">Generic Host command-line arguments (e.g. <c>--Kafka:BootstrapServers=host:9092</c>).</param>
    /// <param name="configFile">Extra JSON configuration file (above appsettings.json and the environment).</param>
    /// <param name="configure">Last-word configuration sources (tests).</param>
    public static WebApplication Build(string[] args, string? configFile = null, Action<IConfigurationBuilder>? configure = null)
    {
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = args, ContentRootPath = Directory.GetCurrentDirectory() });
        // Defaults below every other source: ASP.NET Core's per-request lines would drown the scorer's own.
        builder.Configuration.Sources.Insert(0, new MemoryConfigurationSource
        {
            InitialData = [new("Logging:LogLevel:Microsoft.AspNetCore", "Warning")],
        });
        if (configFile is not null)
        {
            var path = Path.GetFullPath(configFile);
            if (!File.Exists(path))
                throw new ServiceConfigurationException($"Configuration file '{path}' does not exist.");
            builder.Configuration.AddJsonFile(path, optional: false, reloadOnChange: false);
            // The command line keeps the last word over the file.
            builder.Configuration.AddCommandLine(args);
        }
        builder.Configuration.AddSecretFiles();
        configure?.Invoke(builder.Configuration);

        var options = ServiceOptions.Bind(builder.Configuration);
        var kafka = new KafkaOptions();
        builder.Configuration.GetSection(KafkaOptions.SectionName).Bind(kafka);
        try
        {
            kafka.ToConsumerConfig();
        }
        catch (InvalidOperationException e)
        {
            throw new ServiceConfigurationException(e.Message, e);
        }

        builder.Services.Configure<HostOptions>(h => h.ShutdownTimeout = TimeSpan.FromSeconds(options.Scoring.ShutdownTimeoutSeconds + 5));
        // HTTPS only when Kestrel's default certificate is configured (Kestrel:Certificates:Default:Path, KeyPath,
        // Password): UseHttps() takes that certificate.
        var https = !string.IsNullOrWhiteSpace(builder.Configuration["Kestrel:Certificates:Default:Path"]);
        if (options.Http.Port > 0)
            builder.WebHost.ConfigureKestrel(k => k.ListenAnyIP(options.Http.Port, listen =>
            {
                if (https)
                    listen.UseHttps();
            }));
        else
            builder.Services.AddSingleton<IServer, NoServer>();

        builder.Services.AddSingleton(options);
        builder.Services.AddSingleton(options.Scoring);
        builder.Services.AddSingleton(kafka);
        builder.Services.AddSingleton(_ => PostgresDataSource.Create(options.Postgres.ConnectionString));
        builder.Services.AddSingleton(sp => new AnomalyStore(sp.GetRequiredService<NpgsqlDataSource>()));
        builder.Services.AddSingleton(sp => new OffsetStore(sp.GetRequiredService<NpgsqlDataSource>()));
        builder.Services.AddSingleton(sp => new WindowStateStore(sp.GetRequiredService<NpgsqlDataSource>()));
        builder.Services.AddSingleton<DeadLetterProducer>();
        builder.Services.AddSingleton<ServiceMetrics>();
        builder.Services.AddSingleton(_ => new PrometheusExposition(ServiceMetrics.MeterName));
        builder.Services.AddSingleton<ServiceHealth>();
        Alerts.Add(builder.Services, options);
        ReadinessChecks.Add(builder.Services);
        Telemetry.Add(builder.Services, options.Telemetry);
        builder.Services.AddSingleton(sp =>
        {
            var loggerFactory = sp.GetRequiredService<ILoggerFactory>();
            OnnxRuntime.Logger = loggerFactory.CreateLogger("OnnxRuntime");
            return new DetectorSet(Detector.LoadAll(options, loggerFactory.CreateLogger("AnomalyVae.Streaming.Detector")));
        });
        builder.Services.AddSingleton(sp => new ModelRegistry(sp.GetRequiredService<NpgsqlDataSource>()));
        // Registered first, so the schema exists before any worker starts; then the registry-backed models load
        // (after the migrations, before the workers), and the follower keeps them on their active version.
        builder.Services.AddHostedService<DatabaseMigration>();
        // Next: today's and the coming days' partitions exist before the workers write (and expired ones go).
        builder.Services.AddSingleton(options.Storage);
        builder.Services.AddSingleton(sp => new PartitionMaintenance(sp.GetRequiredService<NpgsqlDataSource>(), options.Storage, TimeProvider.System,
            sp.GetRequiredService<ILogger<PartitionMaintenance>>()));
        builder.Services.AddHostedService<PartitionMaintenanceService>();
        builder.Services.AddHostedService<ModelRegistryFollower>();
        Alerts.AddSender(builder.Services, options);
        for (int i = 0; i < options.Detectors.Count; i++)
        {
            int index = i;
            builder.Services.AddSingleton<IHostedService>(sp => new DetectorWorker(
                sp.GetRequiredService<DetectorSet>().Detectors[index], kafka, options.Scoring, options.Retraining,
                sp.GetRequiredService<AnomalyStore>(), sp.GetRequiredService<OffsetStore>(), sp.GetRequiredService<WindowStateStore>(), sp.GetRequiredService<DeadLetterProducer>(),
                sp.GetRequiredService<ServiceMetrics>(), sp.GetRequiredService<ServiceHealth>(), sp.GetRequiredService<ILogger<DetectorWorker>>(),
                sp.GetRequiredService<AlertPublisher>().For(options.Detectors[index])));
        }
        if (RetrainingSchedule.IsEnabled(options.Retraining))
        {
            var names = options.Detectors.Select(d => d.Name).ToArray();
            builder.Services.AddHostedService(sp => new RetrainingSchedule(sp.GetRequiredService<NpgsqlDataSource>(), options.Retraining, names,
                sp.GetRequiredService<ILogger<RetrainingSchedule>>()));
        }

        builder.Services.AddSingleton(sp => new AnomalyQueries(sp.GetRequiredService<NpgsqlDataSource>(), options.Retraining));
        builder.Services.AddSingleton<DriftMonitor>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<DriftMonitor>());

        var app = builder.Build();
        try
        {
            // Load the model files now: one that does not load must stop start-up, not a worker later. Registry
            // models load in ModelRegistryFollower.StartAsync, once the database is migrated.
            app.Services.GetRequiredService<DetectorSet>();
            // The exposition must listen before the instruments are created.
            app.Services.GetRequiredService<PrometheusExposition>();
            app.Services.GetRequiredService<ServiceMetrics>();
            app.Services.GetRequiredService<AlertMetrics>();
            app.Logger.LogInformation("{Build}", BuildInfo.Current);
        }
        catch
        {
            ((IDisposable)app).Dispose();
            throw;
        }
        MapEndpoints(app);
        return app;
    }

    private static void MapEndpoints(WebApplication app)
    {
        app.MapGet("/metrics", (PrometheusExposition exposition) => Results.Text(exposition.Scrape(), PrometheusExposition.ContentType));
        // Liveness runs no check: the process answers. Readiness runs the checks tagged "ready" (ReadinessChecks).
        app.MapHealthChecks("/healthz", new HealthCheckOptions
        {
            Predicate = _ => false,
            ResponseWriter = (context, _) => context.Response.WriteAsync("ok\n"),
        });
        app.MapHealthChecks("/readyz", new HealthCheckOptions
        {
            Predicate = check => check.Tags.Contains(ReadinessChecks.Tag),
            ResponseWriter = ReadinessChecks.WriteAsync,
            ResultStatusCodes =
            {
                [HealthStatus.Healthy] = StatusCodes.Status200OK,
                [HealthStatus.Degraded] = StatusCodes.Status200OK,
                [HealthStatus.Unhealthy] = StatusCodes.Status503ServiceUnavailable,
            },
        });
    }

    /// <summary>Stands in for Kestrel when Http:Port is 0.</summary>
    private sealed class NoServer : IServer
    {
        public IFeatureCollection Features { get; } = new FeatureCollection();

        public Task StartAsync<TContext>(IHttpApplication<TContext> application, CancellationToken cancellationToken)
            where TContext : notnull => Task.CompletedTask;

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public void Dispose()
        {
        }
    }
}

/// <summary>The loaded detectors of the process (disposes their models).</summary>
public sealed class DetectorSet(IReadOnlyList<Detector> detectors) : IDisposable
{
    public IReadOnlyList<Detector> Detectors { get; } = detectors;

    public void Dispose()
    {
        foreach (var detector in Detectors)
            detector.Dispose();
    }
}

/// <summary>Applies the embedded SQL migrations before the workers start (Postgres:MigrateOnStart).</summary>
internal sealed class DatabaseMigration(NpgsqlDataSource dataSource, ServiceOptions options, ILogger<SchemaMigrator> logger) : IHostedService
{
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        if (!options.Postgres.MigrateOnStart)
            return;
        try
        {
            await new SchemaMigrator(dataSource, logger).MigrateAsync(cancellationToken);
        }
        catch (NpgsqlException e)
        {
            throw new ServiceConfigurationException($"Cannot migrate the database (Postgres:ConnectionString): {e.Message}", e);
        }
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
