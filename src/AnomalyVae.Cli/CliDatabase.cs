using System.CommandLine;
using AnomalyVae.Api;
using AnomalyVae.Model;
using AnomalyVae.Storage;
using AnomalyVae.Streaming;
using Microsoft.Extensions.Configuration;
using Npgsql;

namespace AnomalyVae.Cli;

/// <summary>
/// Configuration and database access shared by the commands that talk to PostgreSQL (anomalies, models, api).
/// Configuration layers, later wins: appsettings.json in the working directory, environment variables
/// (Postgres__ConnectionString, Api__Port, ...), the --config file, the secret files of ANOMALYVAE_SECRETS_DIR
/// (<see cref="SecretFiles"/>), then --connection.
/// </summary>
internal sealed class CliDatabase
{
    public static readonly Option<string?> ConnectionOption = new("--connection")
    {
        Description = "PostgreSQL connection string (default: Postgres:ConnectionString from appsettings.json, the environment or --config).",
    };

    public static readonly Option<string?> ConfigOption = new("--config")
    {
        Description = "A JSON configuration file (same keys as appsettings.json).",
    };

    /// <summary>The layered configuration of this invocation.</summary>
    public static IConfiguration Configuration(ParseResult parse)
    {
        var builder = new ConfigurationBuilder()
            .AddJsonFile(Path.Combine(Directory.GetCurrentDirectory(), "appsettings.json"), optional: true)
            .AddEnvironmentVariables();
        if (parse.GetValue(ConfigOption) is { } config)
            builder.AddJsonFile(Path.GetFullPath(CliRun.ExistingFile(config, "configuration file")), optional: false);
        try
        {
            builder.AddSecretFiles();
        }
        catch (ServiceConfigurationException e)
        {
            throw new CliException(e.Message);
        }
        if (parse.GetValue(ConnectionOption) is { } connection)
            builder.AddInMemoryCollection([new(AnomalyApi.ConnectionStringKey, connection)]);
        return builder.Build();
    }

    /// <summary>Opens the configured database, brings its schema up to date, and runs <paramref name="action"/> on it,
    /// turning database and registry failures into one-line CLI errors.</summary>
    public static async Task<int> RunAsync(ParseResult parse, Func<NpgsqlDataSource, Task<int>> action, CancellationToken cancellationToken)
    {
        var connectionString = Configuration(parse)[AnomalyApi.ConnectionStringKey];
        if (string.IsNullOrWhiteSpace(connectionString))
            throw new CliException("no database configured: pass --connection or set Postgres:ConnectionString (appsettings.json, environment Postgres__ConnectionString, or --config).");
        NpgsqlDataSource dataSource;
        try
        {
            dataSource = PostgresDataSource.Create(connectionString);
        }
        catch (ArgumentException e)
        {
            throw new CliException($"invalid connection string: {e.Message}");
        }
        await using (dataSource)
        {
            try
            {
                // Commands may be the first to touch a fresh database; migrations are idempotent and take milliseconds.
                await new SchemaMigrator(dataSource).MigrateAsync(cancellationToken);
                return await action(dataSource);
            }
            catch (Exception e) when (e is ModelRegistryException or ModelNotFoundException or SchemaMigrationException or ModelFormatException)
            {
                throw new CliException(e.Message);
            }
            catch (NpgsqlException e) when (e is not PostgresException)
            {
                throw new CliException($"cannot reach PostgreSQL ({Describe(connectionString)}): {e.Message}");
            }
            catch (PostgresException e)
            {
                throw new CliException($"PostgreSQL: {e.MessageText}");
            }
        }
    }

    /// <summary>Host, port and database of a connection string, without the password.</summary>
    private static string Describe(string connectionString)
    {
        var builder = new NpgsqlConnectionStringBuilder(connectionString);
        return $"{builder.Host}:{builder.Port}/{builder.Database}";
    }
}
