using AnomalyVae.Storage;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace AnomalyVae.Streaming;

/// <summary>
/// Keeps the gauge <c>anomalyvae_drift_psi{detector}</c> current: every <see cref="Interval"/> it asks PostgreSQL for
/// each detector's drift (<see cref="AnomalyQueries.DriftAsync"/>), the same answer GET /api/detectors gives. Read from
/// the database rather than from this process's own windows because in a consumer group each member scores only some
/// partitions; the database has them all.
/// </summary>
public sealed class DriftMonitor(AnomalyQueries queries, DetectorSet detectors, ServiceMetrics metrics, ILogger<DriftMonitor> logger)
    : BackgroundService
{
    /// <summary>How often drift is read: a window is a minute by default, so more often would show nothing new.</summary>
    public static readonly TimeSpan Interval = TimeSpan.FromSeconds(30);

    private readonly Dictionary<string, DetectorDrift> _latest = [];

    /// <summary>The latest drift read per detector (empty until the first read).</summary>
    public IReadOnlyDictionary<string, DetectorDrift> Latest
    {
        get
        {
            lock (_latest)
                return new Dictionary<string, DetectorDrift>(_latest);
        }
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(Interval);
        do
        {
            await RefreshAsync(stoppingToken);
        }
        while (await timer.WaitForNextTickAsync(stoppingToken));
    }

    /// <summary>Reads every detector's drift now and updates the gauge and <see cref="Latest"/>.</summary>
    public async Task RefreshAsync(CancellationToken cancellationToken)
    {
        foreach (var detector in detectors.Detectors)
        {
            try
            {
                var drift = await queries.DriftAsync(detector.Name, cancellationToken);
                lock (_latest)
                    _latest[detector.Name] = drift;
                if (drift.Psi is { } psi)
                    metrics.SetDriftPsi(detector.Name, psi);
                else
                    metrics.ClearDriftPsi(detector.Name);
            }
            catch (Exception e) when (e is NpgsqlException or TimeoutException)
            {
                // The workers report database trouble (readiness); here it only delays the gauge.
                logger.LogDebug("Detector {Detector}: cannot read drift: {Error}", detector.Name, e.Message);
            }
        }
    }
}
