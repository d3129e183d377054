using AnomalyVae.Storage;

namespace AnomalyVae.IntegrationTests.Serve;

/// <summary>The incident tests' batches: detector "d" on topic "t", at event times the test sets (the clock it controls).</summary>
internal static class IncidentBatch
{
    public static readonly DateTime T0 = new(2026, 3, 1, 12, 0, 0, DateTimeKind.Utc);

    /// <summary>A batch of flagged rows (partition, offset, entity, minutes after <see cref="T0"/>, score), each advancing
    /// its partition's clock, with incidents closing after <paramref name="gap"/>, and partition 0's next offset.</summary>
    public static BatchRecord Of(long next, TimeSpan gap, params (int Partition, long Offset, string Entity, double Minutes, double Score)[] flagged)
    {
        var record = new BatchRecord("d", "t")
        {
            ModelVersion = "v1",
            Threshold = 5,
            WindowStart = T0,
            WindowSeconds = 60,
            IncidentGap = gap,
            EventsScored = 10,
        };
        foreach (var (partition, offset, entity, minutes, score) in flagged)
        {
            record.Partitions.Add(partition);
            record.Offsets.Add(offset);
            record.Entities.Add(entity);
            record.EventTimes.Add(T0.AddMinutes(minutes));
            record.Scores.Add(score);
            record.PValues.Add(0.001);
            record.Contributions.Add($"[{{\"feature\":\"a\",\"score\":{score}}},{{\"feature\":\"b\",\"score\":1}}]");
            record.Events.Add("{\"a\":1}");
            record.AdvanceClock(partition, T0.AddMinutes(minutes));
        }
        record.OffsetPartitions.Add(0);
        record.NextOffsets.Add(next);
        record.Quantiles = (1, 2, 3, 9);
        return record;
    }
}
