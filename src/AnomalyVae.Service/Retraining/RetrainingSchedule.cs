using AnomalyVae.Service.Query;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace AnomalyVae.Service.Retraining;

/// <summary>
/// In-process retraining for single-box installs: every detector on Retraining:Interval (trigger "schedule"), and a
/// drifting detector when Retraining:OnDrift is set (trigger "drift", checked every <see cref="DriftCheckInterval"/>,
/// at most once per Retraining:DriftCooldown per detector). The retrainer's advisory lock keeps replicas from
/// training the same detector at once; the others record a skipped run.
/// </summary>
public sealed class RetrainingSchedule(NpgsqlDataSource dataSource, ServiceOptions options, ILogger<RetrainingSchedule> logger) : BackgroundService
{
    /// <summary>How often drift verdicts are read.</summary>
    public static readonly TimeSpan DriftCheckInterval = TimeSpan.FromMinutes(1);

    /// <summary>Whether the options ask for any in-process retraining.</summary>
    public static bool IsEnabled(RetrainingOptions retraining) => retraining.Interval is not null || retraining.OnDrift;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var retraining = options.Retraining;
        if (!IsEnabled(retraining))
            return;
        var retrainer = new Retrainer(dataSource, retraining.Gates, logger: logger);
        var tick = retraining.OnDrift ? DriftCheckInterval : retraining.Interval!.Value;
        if (retraining.Interval is { } i && i < tick)
            tick = i;
        var nextScheduled = retraining.Interval is { } interval ? DateTimeOffset.UtcNow + interval : DateTimeOffset.MaxValue;
        using var timer = new PeriodicTimer(tick);
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken))
            {
                if (DateTimeOffset.UtcNow >= nextScheduled)
                {
                    nextScheduled = DateTimeOffset.UtcNow + retraining.Interval!.Value;
                    foreach (var detector in options.Detectors)
                        await RunAsync(retrainer, detector.Name, Retrainer.Schedule, stoppingToken);
                }
                if (retraining.OnDrift)
                    await RetrainDriftingAsync(retrainer, retraining.DriftCooldown, stoppingToken);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    private async Task RetrainDriftingAsync(Retrainer retrainer, TimeSpan cooldown, CancellationToken cancellationToken)
    {
        IReadOnlyList<DetectorStatus> statuses;
        try
        {
            // Judged with this process's Retraining:Drift* settings (the defaults would ignore them).
            statuses = await new AnomalyQueries(dataSource, options.Retraining).DetectorsAsync(cancellationToken);
        }
        catch (NpgsqlException e)
        {
            logger.LogWarning(e, "Cannot read drift status; retrying in {Interval}", DriftCheckInterval);
            return;
        }
        var configured = options.Detectors.Select(d => d.Name).ToHashSet(StringComparer.Ordinal);
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
