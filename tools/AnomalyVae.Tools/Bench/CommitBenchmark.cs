using System.Diagnostics;
using System.Globalization;
using AnomalyVae.Storage;
using AnomalyVae.Streaming;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;

namespace AnomalyVae.Tools;

/// <summary>
/// <c>bench commit</c>: what incidents cost serve's commit. Writes the same batches (4096 scored events, a share of
/// them flagged over a set of entities, one event time per second per event) through <see cref="AnomalyStore"/>
/// twice, as detector "bench-plain" with incidents off and "bench-incidents" with them on, alternating, and prints
/// the commit time of each. A third detector, "bench-alerts", has incidents on and alerts: its transaction reads the
/// incidents it opened or closed before COMMIT and, with <c>--alerts-topic</c>, produces their alert records to that topic
/// and waits for the broker (as serve does with Detectors:N:Alerts:Topic). Use a scratch database: it is migrated and
/// the detectors' rows are left there.
/// </summary>
internal static class CommitBenchmark
{
    public static int Run(string connectionString, int batches, double flagRate, int entities, TextWriter output, KafkaOptions? kafka = null,
        string? alertsTopic = null)
    {
        using var metrics = new AlertMetrics();
        using var publisher = new AlertPublisher(kafka ?? new KafkaOptions(), new AlertmanagerOptions(), null, metrics, NullLogger<AlertPublisher>.Instance);
        var alerts = publisher.For(new DetectorOptions { Name = "bench-alerts", Topic = "bench", Alerts = { Topic = alertsTopic } });
        long transitions = 0;
        using var dataSource = PostgresDataSource.Create(connectionString);
        new SchemaMigrator(dataSource).MigrateAsync(CancellationToken.None).GetAwaiter().GetResult();
        var store = new AnomalyStore(dataSource);
        var plain = new List<double>();
        var incidents = new List<double>();
        var alerted = new List<double>();
        var start = DateTime.UtcNow.Date;
        long offsetBase = Stopwatch.GetTimestamp();
        var random = new Random(1);
        int flagged = (int)Math.Round(4096 * flagRate);
        for (int b = 0; b < batches + 5; b++)
        {
            // The same rows for both detectors: only the detector name and the incident gap differ.
            var entityOf = Enumerable.Range(0, flagged).Select(_ => $"e{random.Next(entities)}").ToArray();
            foreach (var (detector, gap, times) in new[]
                     {
                         ("bench-plain", TimeSpan.Zero, plain), ("bench-incidents", TimeSpan.FromMinutes(5), incidents),
                         ("bench-alerts", TimeSpan.FromMinutes(5), alerted),
                     })
            {
                var record = new BatchRecord(detector, "bench") { ModelVersion = "v1", Threshold = 5, WindowSeconds = 60, IncidentGap = gap };
                record.WindowStart = start;
                record.EventsScored = 4096;
                record.Quantiles = (1, 2, 3, 9);
                for (int i = 0; i < flagged; i++)
                {
                    long offset = offsetBase + (long)b * 4096 + i * (4096 / Math.Max(1, flagged));
                    var time = start.AddSeconds((double)b * 4096 + i);
                    record.Partitions.Add(0);
                    record.Offsets.Add(offset);
                    record.Entities.Add(entityOf[i]);
                    record.EventTimes.Add(time);
                    record.Scores.Add(10 + i % 7);
                    record.PValues.Add(0.001);
                    record.Contributions.Add("[{\"feature\":\"temperature\",\"score\":6.5},{\"feature\":\"vibration\",\"score\":2.1},{\"feature\":\"pressure\",\"score\":0.9}]");
                    record.Events.Add("{\"machine_id\":\"" + entityOf[i] + "\",\"temperature\":99.5,\"vibration\":0.5}");
                }
                record.AdvanceClock(0, start.AddSeconds((double)b * 4096 + 4095));
                record.OffsetPartitions.Add(0);
                record.NextOffsets.Add(offsetBase + (long)(b + 1) * 4096);
                var clock = Stopwatch.GetTimestamp();
                if (detector == "bench-alerts")
                {
                    store.WriteAsync(record, (t, ct) =>
                    {
                        transitions += t.Count;
                        return alerts is null ? Task.CompletedTask : alerts.BeforeCommitAsync(record, t, ct);
                    }, CancellationToken.None).GetAwaiter().GetResult();
                }
                else
                {
                    store.WriteAsync(record, CancellationToken.None).GetAwaiter().GetResult();
                }
                // The first batches warm the connection pool and plans up.
                if (b >= 5)
                    times.Add(Stopwatch.GetElapsedTime(clock).TotalMilliseconds);
            }
        }
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{batches} batches of 4096 events, {flagged} flagged over {entities} entities, one transaction each"));
        string third = alertsTopic is null ? "incidents + transitions read" : $"incidents + alerts to {alertsTopic}";
        foreach (var (name, times) in new[] { ("incidents off", plain), ("incidents on", incidents), (third, alerted) })
        {
            times.Sort();
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{name,-14} commit ms: median {times[times.Count / 2]:F2}, p95 {times[(int)(times.Count * 0.95)]:F2}, mean {times.Average():F2}"));
        }
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"incident transitions (opened + closed) per batch with alerts: {(double)transitions / (batches + 5):F1}"));
        return 0;
    }
}
