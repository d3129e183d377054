using System.CommandLine;
using AnomalyVae.Storage;
using AnomalyVae.Streaming;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace AnomalyVae.Cli;

/// <summary><c>serve</c> (the streaming scorer), <c>version</c> and <c>db migrate</c>.</summary>
internal static class ServeCommands
{
    public static Command Serve()
    {
        var config = new Option<string?>("--config") { Description = "Extra JSON configuration file (Kafka, Postgres, Detectors, Scoring, Http)." };
        var serve = new Command("serve",
            "Score Kafka events with the configured detectors and write anomalies to PostgreSQL. Other arguments are host "
            + "configuration, e.g. --Kafka:BootstrapServers=host:9092.")
        { config };
        serve.TreatUnmatchedTokensAsErrors = false;
        // A synchronous action: the host's own console lifetime handles SIGTERM/Ctrl+C and waits for the graceful
        // shutdown (in-flight batch committed) instead of the parser's short termination timeout.
        serve.SetAction(parse =>
        {
            var hostArgs = parse.UnmatchedTokens.ToArray();
            using var app = Configured(() => ServeHost.Build(hostArgs, parse.GetValue(config)));
            // RunAsync disposes the host's services when it returns.
            var health = app.Services.GetRequiredService<ServiceHealth>();
            try
            {
                app.RunAsync().GetAwaiter().GetResult();
            }
            catch (ServiceConfigurationException e)
            {
                throw new CliException(e.Message);
            }
            return health.ExitCode;
        });
        return serve;
    }

    public static Command Version()
    {
        var version = new Command("version", "Print this build's version and the ONNX Runtime and librdkafka versions it loads.");
        version.SetAction(_ =>
        {
            Console.Out.WriteLine(BuildInfo.Current.ToString());
            return 0;
        });
        return version;
    }

    public static Command Db()
    {
        var config = new Option<string?>("--config") { Description = "JSON configuration file holding Postgres:ConnectionString." };
        var connection = new Option<string?>("--connection") { Description = "Npgsql connection string (else Postgres:ConnectionString from the configuration)." };
        var migrate = new Command("migrate", "Apply the SQL migrations (idempotent; safe to run while services run).") { connection, config };
        migrate.TreatUnmatchedTokensAsErrors = false;
        migrate.SetAction(async (parse, cancellationToken) =>
        {
            var builder = new ConfigurationBuilder().SetBasePath(Directory.GetCurrentDirectory())
                .AddJsonFile("appsettings.json", optional: true).AddEnvironmentVariables();
            if (parse.GetValue(config) is { } file)
                builder.AddJsonFile(Path.GetFullPath(CliRun.ExistingFile(file, "configuration file")), optional: false);
            try
            {
                builder.AddSecretFiles();
            }
            catch (ServiceConfigurationException e)
            {
                throw new CliException(e.Message);
            }
            var configuration = builder.AddCommandLine(parse.UnmatchedTokens.ToArray()).Build();
            var connectionString = parse.GetValue(connection) ?? configuration["Postgres:ConnectionString"];
            if (string.IsNullOrWhiteSpace(connectionString))
                throw new CliException("no database: pass --connection or set Postgres:ConnectionString.");
            using var loggers = LoggerFactory.Create(l => l.AddSimpleConsole(o => o.SingleLine = true));
            await using var dataSource = PostgresDataSource.Create(connectionString);
            try
            {
                var applied = await new SchemaMigrator(dataSource, loggers.CreateLogger<SchemaMigrator>()).MigrateAsync(cancellationToken);
                Console.WriteLine(applied.Count == 0 ? "database is up to date" : $"applied {applied.Count} migration(s): {string.Join(", ", applied.Select(m => m.ToString()))}");
            }
            catch (Exception e) when (e is NpgsqlException or SchemaMigrationException)
            {
                throw new CliException($"db migrate: {e.Message}");
            }
            return 0;
        });
        return new Command("db", "Database administration.") { migrate };
    }

    private static T Configured<T>(Func<T> build)
    {
        try
        {
            return build();
        }
        catch (ServiceConfigurationException e)
        {
            throw new CliException(e.Message);
        }
    }
}
