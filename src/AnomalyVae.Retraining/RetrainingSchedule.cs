using AnomalyVae.Storage;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace AnomalyVae.Retraining;

/// <summary>
/// In-process retraining for single-box installs: every detector on Retraining:Interval (trigger "schedule"), and a
/// drifting detector when Retraining:OnDrift is set (trigger "drift"), both looked at every Retraining:CheckInterval.
/// When a run is due, across restarts and replicas: docs/retraining.md, "Schedules".
/// </summary>
/// <param name="detectors">The detectors this process serves (their names).</param>
public sealed class RetrainingSchedule(NpgsqlDataSource dataSource, RetrainingOptions retraining, IReadOnlyList<string> detectors,
    ILogger<RetrainingSchedule> logger) : BackgroundService
{
    /// <summary>Whether the options ask for any in-process retraining.</summary>
    public static bool IsEnabled(RetrainingOptions retraining) => retraining.Interval is not null || retraining.OnDrift;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (!IsEnabled(retraining))
            return;
        var retrainer = new Retrainer(dataSource, retraining.Gates, logger: logger, driftThreshold: retraining.DriftThreshold, driftWindow: retraining.DriftWindow);
        var tick = retraining.Interval is { } i && i < retraining.CheckInterval ? i : retraining.CheckInterval;
        var started = DateTimeOffset.UtcNow;
        // Local record of attempts: a run that fails before it is recorded (e.g. an unknown detector) must not be
        // retried on every tick.
        var attempted = new Dictionary<string, DateTimeOffset>(StringComparer.Ordinal);
        using var timer = new PeriodicTimer(tick);
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken))
            {
                if (retraining.Interval is { } interval)
                {
                    foreach (var detector in detectors)
                    {
                        if (attempted.TryGetValue(detector, out var at) && DateTimeOffset.UtcNow - at < interval)
                            continue;
                        if (!await ScheduledRunDueAsync(detector, interval, DateTimeOffset.UtcNow - started, stoppingToken))
                            continue;
                        attempted[detector] = DateTimeOffset.UtcNow;
                        await RunAsync(retrainer, detector, Retrainer.Schedule, stoppingToken);
                    }
                }
                if (retraining.OnDrift)
                    await RetrainDriftingAsync(retrainer, retraining.DriftCooldown, stoppingToken);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    /// <summary>Whether a scheduled run of <paramref name="detector"/> is due: its latest one started at least
    /// <paramref name="interval"/> ago by the database's clock (the one every replica shares), or, with none recorded,
    /// this process has been up that long.</summary>
    private async Task<bool> ScheduledRunDueAsync(string detector, TimeSpan interval, TimeSpan uptime, CancellationToken cancellationToken)
    {
        try
        {
            await using var command = dataSource.CreateCommand(
                "SELECT now() - max(started_at) FROM retrain_runs WHERE detector = $1 AND trigger = 'schedule'");
            command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = detector });
            var since = await command.ExecuteScalarAsync(cancellationToken);
            return since is TimeSpan age ? age >= interval : uptime >= interval;
        }
        catch (NpgsqlException e)
        {
            logger.LogWarning(e, "Cannot read the retraining runs of {Detector}; the scheduled run waits for the next check", detector);
            return false;
        }
    }

    private async Task RetrainDriftingAsync(Retrainer retrainer, TimeSpan cooldown, CancellationToken cancellationToken)
    {
        IReadOnlyList<DetectorStatus> statuses;
        try
        {
            // Judged with this process's Retraining:Drift* settings (the defaults would ignore them).
            statuses = await new AnomalyQueries(dataSource, retraining).DetectorsAsync(cancellationToken);
        }
        catch (NpgsqlException e)
        {
            logger.LogWarning(e, "Cannot read drift status; retrying in {Interval}", retraining.CheckInterval);
            return;
        }
        var configured = detectors.ToHashSet(StringComparer.Ordinal);
        foreach (var status in statuses.Where(s => s.DriftStatus == "drift" && configured.Contains(s.Detector)))
        {
            if (await InCooldownAsync(status.Detector, cooldown, cancellationToken))
                continue;
            await RunAsync(retrainer, status.Detector, Retrainer.Drift, cancellationToken);
        }
    }

    /// <summary>Whether a drift-triggered run of <paramref name="detector"/> that did train (not skipped) started within
    /// the cooldown; read from retrain_runs so that every replica sees the same cooldown.</summary>
    private async Task<bool> InCooldownAsync(string detector, TimeSpan cooldown, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand(
            """
            SELECT EXISTS (SELECT 1 FROM retrain_runs
                           WHERE detector = $1 AND trigger = 'drift' AND decision IS DISTINCT FROM 'skipped'
                             AND started_at > now() - $2)
            """);
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = detector });
        command.Parameters.Add(new NpgsqlParameter<TimeSpan> { TypedValue = cooldown });
        return await command.ExecuteScalarAsync(cancellationToken) is true;
    }

    private async Task RunAsync(Retrainer retrainer, string detector, string trigger, CancellationToken cancellationToken)
    {
        try
        {
            var outcome = await retrainer.RunAsync(detector, trigger, cancellationToken);
            logger.LogInformation("Retrained {Detector} ({Trigger}): {Decision} {Challenger}", detector, trigger, outcome.Decision, outcome.ChallengerVersion);
        }
        catch (Exception e) when (e is RetrainingException or NpgsqlException)
        {
            logger.LogWarning("Retraining {Detector} ({Trigger}) did not run: {Message}", detector, trigger, e.Message);
        }
    }
}
