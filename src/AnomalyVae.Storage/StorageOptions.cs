namespace AnomalyVae.Storage;

/// <summary>Section <c>Storage</c>: daily partitions of the tables that grow with traffic, and how long they are kept.</summary>
public sealed class StorageOptions
{
    public const string SectionName = "Storage";

    /// <summary>Per table, how long rows are kept; unset keeps them forever.</summary>
    public RetentionOptions Retention { get; } = new();

    /// <summary>Days of partitions kept ready after today (a row no partition takes is refused, so this is the
    /// headroom for maintenance runs that fail).</summary>
    public int PartitionsAhead { get; set; } = 7;

    /// <summary>How often serve runs <see cref="PartitionMaintenance"/> (also once at start-up).</summary>
    public TimeSpan MaintenanceInterval { get; set; } = TimeSpan.FromHours(1);

    /// <summary>What is wrong with these settings (empty when valid), each naming its key.</summary>
    public IEnumerable<string> Problems()
    {
        if (PartitionsAhead is < 1 or > 366)
            yield return $"Storage:PartitionsAhead is {PartitionsAhead}; it must be between 1 and 366.";
        if (MaintenanceInterval < TimeSpan.FromMinutes(1) || MaintenanceInterval > TimeSpan.FromHours(12))
            yield return "Storage:MaintenanceInterval must be between 00:01:00 and 12:00:00.";
        foreach (var (key, value) in new[] { ("Anomalies", Retention.Anomalies), ("ScoringStats", Retention.ScoringStats) })
        {
            // A day at least: today's partition takes today's rows and must never be the one dropped.
            if (value is { } r && r < TimeSpan.FromDays(1))
                yield return $"Storage:Retention:{key} must be at least 1.00:00:00 when set (unset keeps rows forever).";
        }
    }
}

/// <summary>Section <c>Storage:Retention</c>: how long each partitioned table keeps rows (unset: forever).</summary>
public sealed class RetentionOptions
{
    /// <summary>anomalies (with their feedback and the incidents closed before the cut-off).</summary>
    public TimeSpan? Anomalies { get; set; }

    /// <summary>scoring_stats windows (flag rates, drift bins).</summary>
    public TimeSpan? ScoringStats { get; set; }
}
