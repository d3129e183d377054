using System.Text.Json;
using AnomalyVae.IntegrationTests.Infrastructure;
using AnomalyVae.Service;
using AnomalyVae.Service.Registry;
using AnomalyVae.Service.Retraining;
using AnomalyVae.Service.Storage;
using Npgsql;

namespace AnomalyVae.IntegrationTests.Serve;

/// <summary>
/// In-process retraining through a running serve, nothing called directly: a detector follows the registry, serve
/// samples what it scores, and its schedule (Retraining:Interval) retrains and records the run.
/// </summary>
[Collection(InfrastructureCollection.Name)]
public sealed class InProcessRetrainingTests(TestInfrastructure infrastructure, ServeFixture fixture) : IClassFixture<ServeFixture>
{
    [Fact]
    public async Task Retraining_Interval_runs_a_scheduled_retrain_an_interval_after_the_previous_scheduled_run()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        var topic = await infrastructure.CreateTopicAsync("interval", partitions: 2, cts.Token);
        var deadLetters = await infrastructure.CreateTopicAsync("interval-dlq", partitions: 1, cts.Token);
        var database = await infrastructure.CreateDatabaseAsync("interval", cts.Token);
        try
        {
            await using var dataSource = NpgsqlDataSource.Create(database);
            await new SchemaMigrator(dataSource).MigrateAsync(cts.Token);
            var v1 = await new ModelRegistry(dataSource).RegisterFileAsync("sensors", fixture.ModelPath, activate: true, cts.Token);
            // The schedule is anchored on retrain_runs: a scheduled run 50 s ago (an earlier serve process) makes the
            // next one due 10 s from now with a one-minute interval, not a minute after this process starts.
            DateTime previous;
            await using (var command = dataSource.CreateCommand(
                """
                INSERT INTO retrain_runs (detector, started_at, finished_at, trigger, active_version, decision)
                VALUES ('sensors', now() - interval '50 seconds', now() - interval '45 seconds', 'schedule', $1, 'rejected') RETURNING started_at
                """))
            {
                command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = v1.Version });
                previous = (DateTime)(await command.ExecuteScalarAsync(cts.Token))!;
            }
            var events = await ServeFixture.ProduceAsync(infrastructure, topic, ServeFixture.Events(6000, seed: 61), cts.Token);
            var configuration = fixture.Configuration(infrastructure, topic, deadLetters, database, $"g-{Guid.NewGuid():N}", model: "sensors");
            configuration["Retraining:SampleSize"] = "3000";
            configuration["Retraining:SampleRate"] = "0.6";
            configuration["Retraining:RecentSize"] = "1000";
            configuration["Retraining:RecentRate"] = "0.4";
            configuration["Retraining:Interval"] = "00:01:00";
            configuration["Retraining:CheckInterval"] = "00:00:01";
            var started = DateTime.UtcNow;
            await using var app = ServeFixture.Host(configuration);
            await app.StartAsync(cts.Token);
            await ServeFixture.WaitForOffsetsAsync(database, topic, events, cts.Token);

            RetrainRun? run = null;
            while (run is null)
            {
                await Task.Delay(250, cts.Token);
                run = (await RunsAsync(dataSource, cts.Token)).FirstOrDefault(r => r.Started > previous && r.Decision is not null);
            }
            Console.WriteLine($"previous scheduled run {previous:HH:mm:ss.fff}, serve started {started:HH:mm:ss.fff}, scheduled run {run.Started:HH:mm:ss.fff} "
                + $"({(run.Started - previous).TotalSeconds:F1} s after the previous one): {run.Decision} in {run.Seconds:F1} s\n  " + string.Join("\n  ", run.Reasons));
            Assert.Equal((Retrainer.Schedule, v1.Version), (run.Trigger, run.ActiveVersion));
            Assert.Contains(run.Decision, new[] { Retrainer.Promoted, Retrainer.Rejected });
            Assert.True(run.Started - previous >= TimeSpan.FromMinutes(1), $"ran {(run.Started - previous).TotalSeconds:F1} s after the previous scheduled run");
            Assert.True(run.Started - started < TimeSpan.FromMinutes(1), "the run waited a whole interval after start instead of after the previous run");
            Assert.Equal(2, (await RunsAsync(dataSource, cts.Token)).Count);
            await app.StopAsync(cts.Token);
        }
        finally
        {
            NpgsqlConnection.ClearAllPools();
            await infrastructure.DropDatabaseAsync(database, CancellationToken.None);
        }
    }

    private sealed record RetrainRun(
        DateTime Started, double Seconds, string Trigger, string? ActiveVersion, string? ChallengerVersion, string? Decision, string[] Reasons, string? Truncation);

    /// <summary>retrain_runs, newest first.</summary>
    private static async Task<List<RetrainRun>> RunsAsync(NpgsqlDataSource dataSource, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand(
            """
            SELECT started_at, EXTRACT(EPOCH FROM finished_at - started_at)::float8, trigger, active_version, challenger_version, decision,
                   reasons::text, (metrics -> 'truncation')::text
            FROM retrain_runs ORDER BY started_at DESC
            """);
        var runs = new List<RetrainRun>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            runs.Add(new RetrainRun(reader.GetDateTime(0), reader.IsDBNull(1) ? double.NaN : reader.GetDouble(1), reader.GetString(2),
                reader.IsDBNull(3) ? null : reader.GetString(3), reader.IsDBNull(4) ? null : reader.GetString(4), reader.IsDBNull(5) ? null : reader.GetString(5),
                JsonSerializer.Deserialize<string[]>(reader.GetString(6))!, reader.IsDBNull(7) ? null : reader.GetString(7)));
        }
        return runs;
    }


}
