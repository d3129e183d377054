using System.Diagnostics;
using AnomalyVae.Events;
using AnomalyVae.Model;
using AnomalyVae.Tests;
using AnomalyVae.Tools;
using Xunit.Abstractions;

namespace AnomalyVae.QualityTests;

/// <summary>
/// Prints, for the record, how many events per second each generator makes in memory: events alone, as JSON
/// payloads, and as CSV records. Asserts only that the runs did the work and allocated nothing per event; timings
/// vary by machine, build and load and are never pass/fail here.
/// </summary>
[Collection(nameof(ProcessWideMeasurements))]
public sealed class SyntheticStreamThroughputBench(ITestOutputHelper output)
{
    private const int Events = 300_000;

    [Theory]
    [InlineData("sensors")]
    [InlineData("transactions")]
    public void Events_per_second_in_memory(string domain)
    {
        var generator = GeneratedEvents.Create(domain, seed: 1);
        using var csv = new CsvWriter(TextWriter.Null);
        Run(generator, 20_000, _ => { }); // warm-up (tiered JIT)
        Run(generator, 20_000, g => g.EventJson());
        Run(generator, 20_000, g => g.WriteCsvRecord(csv));

        var allocatedBefore = GC.GetAllocatedBytesForCurrentThread();
        var (next, anomalies) = Run(generator, Events, _ => { });
        var (json, _) = Run(generator, Events, g => g.EventJson());
        var allocated = GC.GetAllocatedBytesForCurrentThread() - allocatedBefore;
        var (csvRate, _) = Run(generator, Events, g => g.WriteCsvRecord(csv));

        output.WriteLine(
            $"{domain}: {next:N0} events/s generated, {json:N0}/s as JSON ({generator.EventJson().Length} B each), " +
            $"{csvRate:N0}/s as CSV records; {Environment.ProcessorCount} cores");
        Assert.True(anomalies > 0);
        Assert.True(allocated < 64 * 1024, $"{allocated} bytes allocated for {2 * Events} events");
    }

    private static (double PerSecond, long Anomalies) Run(SyntheticStream generator, int count, Action<SyntheticStream> emit)
    {
        long anomalies = 0;
        var clock = Stopwatch.StartNew();
        for (var i = 0; i < count; i++)
        {
            generator.Next();
            emit(generator);
            anomalies += generator.Label;
        }

        return (count / clock.Elapsed.TotalSeconds, anomalies);
    }
}
