using AnomalyVae.Storage;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace AnomalyVae.Streaming;

/// <summary>
/// Runs <see cref="PartitionMaintenance"/> in serve: once while starting (after the migrations, before the detector
/// workers, so today's partitions exist before the first batch commits), then every Storage:MaintenanceInterval. A
/// failed run is logged and retried at the next tick: PartitionsAhead days of partitions are the headroom.
/// </summary>
internal sealed class PartitionMaintenanceService(PartitionMaintenance maintenance, StorageOptions options, ILogger<PartitionMaintenanceService> logger)
    : BackgroundService
{
    public override async Task StartAsync(CancellationToken cancellationToken)
    {
        await RunOnceAsync(cancellationToken);
        await base.StartAsync(cancellationToken);
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(options.MaintenanceInterval);
        while (await timer.WaitForNextTickAsync(stoppingToken))
            await RunOnceAsync(stoppingToken);
    }

    private async Task RunOnceAsync(CancellationToken cancellationToken)
    {
        try
        {
            await maintenance.RunAsync(cancellationToken);
        }
        catch (Exception e) when (e is NpgsqlException or TimeoutException)
        {
            logger.LogError("Partition maintenance failed (retried in {Interval}): {Error}", options.MaintenanceInterval, e.Message);
        }
    }
}
