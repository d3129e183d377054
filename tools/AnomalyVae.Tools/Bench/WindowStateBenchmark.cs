using System.Diagnostics;
using System.Globalization;
using System.Text;
using AnomalyVae.Events;
using AnomalyVae.Model;
using AnomalyVae.Storage;
using AnomalyVae.Streaming;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;

namespace AnomalyVae.Tools;

/// <summary>
/// <c>bench windows</c>: what a windowed detector's state costs serve. Memory: <c>--entities</c> entities with full
/// histories (W−1 steps of F features) in <see cref="EntityWindows"/>, managed heap and process RSS before and
/// after, and the CPU of the per-event state work (find, assemble the window, append). Commit: 4096-event batches
/// through <see cref="AnomalyStore"/> without state, with the state of a few entities and of 4096 entities, and the
/// reads serve makes (one miss query for 4096 entities; one partition read at assignment). Use a scratch database.
/// </summary>
internal static class WindowStateBenchmark
{
    private const int BatchEvents = 4096;

    public static int Run(string? connectionString, int entities, int steps, int features, int batches, TextWriter output)
    {
        var schema = new FeatureSchema(Enumerable.Range(0, features).Select(j => FittedFeature.Numeric($"f{j}", 0, 1)));
        var window = new WindowDefinition(steps, "machine");
        Memory(schema, window, entities, output);
        if (connectionString is not null)
            Commits(connectionString, schema, window, entities, batches, output);
        return 0;
    }

    private static void Memory(FeatureSchema schema, WindowDefinition window, int entities, TextWriter output)
    {
        int f = schema.Count, w = window.Steps;
        var decoder = new EventDecoder(schema, "machine", null);
        var payloads = new byte[entities][];
        for (int e = 0; e < entities; e++)
            payloads[e] = Payload(e, f, 0);
        var x = new float[w * f];
        var mask = new float[w * f];
        var windows = new EntityWindows("bench", "bench", entities, null, null, NullLogger.Instance);
        long batch = windows.BeginBatch(schema, window);
        GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: true);
        long heapBefore = GC.GetTotalMemory(true);
        long rssBefore = Environment.WorkingSet;
        var clock = Stopwatch.StartNew();
        long events = 0;
        // W−1 rounds over every entity fill each history; the rounds after that are the steady state timed below.
        for (int round = 0; round < w - 1; round++)
        {
            for (int e = 0; e < entities; e++, events++)
                Step(windows, decoder, payloads[e], e, x, mask, w, f, batch, events);
        }
        double fill = clock.Elapsed.TotalSeconds;
        GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: true);
        long heapAfter = GC.GetTotalMemory(true);
        long rssAfter = Environment.WorkingSet;
        clock.Restart();
        long steady = 0;
        for (int round = 0; round < 3; round++)
        {
            for (int e = 0; e < entities; e++, events++, steady++)
                Step(windows, decoder, payloads[e], e, x, mask, w, f, batch, events);
        }
        double perEvent = clock.Elapsed.TotalSeconds / steady;
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"memory: {windows.Count:N0} entities × {w - 1} steps × {f} features: managed heap +{(heapAfter - heapBefore) / 1048576.0:F1} MiB "
            + $"({(heapAfter - heapBefore) / (double)entities:F0} B/entity), RSS {rssBefore / 1048576.0:F0} → {rssAfter / 1048576.0:F0} MiB "
            + $"(+{(rssAfter - rssBefore) / 1048576.0:F1} MiB); filling took {fill:F2} s"));
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"state work per event (decode, find the entity, assemble the window, append): {perEvent * 1e6:F2} µs"));
        GC.KeepAlive(windows);
    }

    private static void Step(EntityWindows windows, EventDecoder decoder, byte[] payload, int e, float[] x, float[] mask, int w, int f, long batch, long offset)
    {
        int last = (w - 1) * f;
        var decoded = decoder.Decode(payload, x.AsSpan(last, f), mask.AsSpan(last, f));
        var history = windows.Find(e & 3, decoded.Entity, payload, batch);
        var steps = new HistorySteps(history, x.AsSpan(last, f), mask.AsSpan(last, f));
        WindowAssembly.Fill(ref steps, w, f, x, mask);
        history.Append(x.AsSpan(last, f), mask.AsSpan(last, f), offset);
    }

    private static void Commits(string connectionString, FeatureSchema schema, WindowDefinition window, int entities, int batches, TextWriter output)
    {
        using var dataSource = PostgresDataSource.Create(connectionString);
        new SchemaMigrator(dataSource).MigrateAsync(CancellationToken.None).GetAwaiter().GetResult();
        var store = new AnomalyStore(dataSource);
        var states = new WindowStateStore(dataSource);
        string spec = EntityWindows.Fingerprint(schema);
        int f = schema.Count, capacity = window.Steps - 1;
        // Full histories to pack (the packed size is what matters, not the values).
        var histories = new EntityHistory[entities];
        var random = new Random(1);
        for (int e = 0; e < entities; e++)
        {
            histories[e] = new EntityHistory(0, $"e{e}", capacity, f);
            for (int s = 0; s < capacity; s++)
            {
                var values = Enumerable.Range(0, f).Select(_ => (float)random.NextDouble()).ToArray();
                histories[e].Append(values, Enumerable.Repeat(1f, f).ToArray(), s);
            }
        }
        string run = DateTime.UtcNow.Ticks.ToString(CultureInfo.InvariantCulture);
        var cases = new (string Name, int Touched)[] { ("no state", 0), ("state, 100 entities", 100), ($"state, {BatchEvents} entities", BatchEvents) };
        var times = cases.Select(_ => new List<double>()).ToArray();
        var start = DateTime.UtcNow.Date;
        int cursor = 0;
        for (int b = 0; b < batches + 5; b++)
        {
            for (int c = 0; c < cases.Length; c++)
            {
                var record = new BatchRecord($"bench-{c}-{run}", "bench") { ModelVersion = "v1", Threshold = 5, WindowSeconds = 60, WindowStart = start };
                record.EventsScored = BatchEvents;
                record.Quantiles = (1, 2, 3, 9);
                // 1 % flagged, as serve's default target.
                for (int i = 0; i < BatchEvents / 100; i++)
                {
                    record.Partitions.Add(0);
                    record.Offsets.Add(((long)b * BatchEvents) + (i * 100));
                    record.Entities.Add($"e{i}");
                    record.EventTimes.Add(start.AddSeconds(b));
                    record.Scores.Add(10);
                    record.PValues.Add(0.001);
                    record.Contributions.Add("[{\"feature\":\"f0\",\"score\":6.5}]");
                    record.Events.Add("{\"machine\":\"e1\",\"f0\":9.5}");
                }
                record.OffsetPartitions.Add(0);
                record.NextOffsets.Add((long)(b + 1) * BatchEvents);
                record.WindowState.Spec = spec;
                for (int i = 0; i < cases[c].Touched; i++)
                {
                    var history = histories[(cursor + i) % entities];
                    history.Pack(record.WindowState.Add(0, history.Entity, ((long)b * BatchEvents) + i, history.PackedLength));
                }
                var clock = Stopwatch.GetTimestamp();
                store.WriteAsync(record, CancellationToken.None).GetAwaiter().GetResult();
                if (b >= 5)
                    times[c].Add(Stopwatch.GetElapsedTime(clock).TotalMilliseconds);
            }
            cursor += BatchEvents;
        }
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"commit of {batches} batches of {BatchEvents} events (1 % flagged), W = {window.Steps}, {f} features, {histories[0].PackedLength} B of state per entity:"));
        for (int c = 0; c < cases.Length; c++)
        {
            var t = times[c];
            t.Sort();
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"  {cases[c].Name,-22} median {t[t.Count / 2]:F2} ms, p95 {t[(int)(t.Count * 0.95)]:F2} ms, mean {t.Average():F2} ms"));
        }

        // Reads: the detector with state for every entity (the last case wrote them all once the cursor went round).
        string detector = $"bench-2-{run}";
        var names = Enumerable.Range(0, BatchEvents).Select(i => $"e{(i * 7919) % entities}").ToArray();
        var partitions = new int[BatchEvents];
        var miss = new List<double>();
        for (int i = 0; i < 10; i++)
        {
            var clock = Stopwatch.GetTimestamp();
            var rows = states.LoadEntitiesAsync(detector, "bench", partitions, names, spec, CancellationToken.None).GetAwaiter().GetResult();
            miss.Add(Stopwatch.GetElapsedTime(clock).TotalMilliseconds);
            if (rows.Count == 0)
                throw new InvalidOperationException("the miss query found no stored state");
        }
        miss.Sort();
        var read = Stopwatch.GetTimestamp();
        int stored = states.LoadPartitionsAsync(detector, "bench", [0], spec, 10_000_000, CancellationToken.None).GetAwaiter().GetResult().Count;
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"reads: one miss query for {BatchEvents} entities median {miss[miss.Count / 2]:F1} ms; assignment read of {stored:N0} entities {Stopwatch.GetElapsedTime(read).TotalMilliseconds:F0} ms"));
    }

    private static byte[] Payload(int entity, int features, int seed)
    {
        var text = new StringBuilder();
        text.Append(CultureInfo.InvariantCulture, $"{{\"machine\":\"machine-{entity:D6}\"");
        for (int j = 0; j < features; j++)
            text.Append(CultureInfo.InvariantCulture, $",\"f{j}\":{(entity * 31 + j + seed) % 97 / 10.0}");
        return Encoding.UTF8.GetBytes(text.Append('}').ToString());
    }
}
