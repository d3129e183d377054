using System.CommandLine;
using AnomalyVae.Api;
using AnomalyVae.Storage;
using Npgsql;

namespace AnomalyVae.Cli;

/// <summary><c>api</c>: the stand-alone query/registry HTTP API and dashboard (see <see cref="ApiOptions"/> for its keys).</summary>
internal static class ApiCommand
{
    public static Command Create()
    {
        var port = new Option<int?>("--port") { Description = $"Port to listen on (default Api:Port, else {ApiOptions.DefaultPort})." };
        var command = new Command("api", "Serve the anomaly query and model registry HTTP API and the dashboard until stopped (Ctrl+C).")
        {
            port, CliDatabase.ConnectionOption, CliDatabase.ConfigOption,
        };
        command.SetAction(async (ParseResult parse, CancellationToken cancellationToken) =>
        {
            var configuration = CliDatabase.Configuration(parse);
            if (string.IsNullOrWhiteSpace(configuration[AnomalyApi.ConnectionStringKey]))
                throw new CliException("no database configured: pass --connection or set Postgres:ConnectionString (appsettings.json, environment Postgres__ConnectionString, or --config).");
            if (parse.GetValue(port) is { } p)
                configuration[$"{ApiOptions.Section}:{nameof(ApiOptions.Port)}"] = p.ToString(System.Globalization.CultureInfo.InvariantCulture);
            await using var app = BuildOrFail(configuration);
            try
            {
                var addresses = await ApiHost.StartAsync(app, cancellationToken);
                Console.Out.WriteLine($"anomalyvae api listening on {string.Join(", ", addresses)}");
            }
            catch (Exception e) when (e is SchemaMigrationException or NpgsqlException or IOException)
            {
                throw new CliException(e is PostgresException pg ? $"PostgreSQL: {pg.MessageText}" : e.Message);
            }
            // Stop on Ctrl+C/SIGTERM whichever handler sees it first: the host's own lifetime or the command line's.
            using var stopping = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, app.Lifetime.ApplicationStopping);
            try
            {
                await Task.Delay(Timeout.Infinite, stopping.Token);
            }
            catch (OperationCanceledException)
            {
            }
            await app.StopAsync(CancellationToken.None);
            return 0;
        });
        return command;
    }

    private static Microsoft.AspNetCore.Builder.WebApplication BuildOrFail(Microsoft.Extensions.Configuration.IConfiguration configuration)
    {
        try
        {
            return ApiHost.Build(configuration);
        }
        catch (InvalidOperationException e)
        {
            throw new CliException(e.Message);
        }
    }
}
