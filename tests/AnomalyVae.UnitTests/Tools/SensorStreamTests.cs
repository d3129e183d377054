using AnomalyVae.Tests;
using AnomalyVae.Tools;

using static AnomalyVae.Tools.SensorStream;

namespace AnomalyVae.UnitTests.Tools;

public class SensorStreamTests(SensorStreamTests.Stream stream) : IClassFixture<SensorStreamTests.Stream>
{
    private List<GeneratedEvent> Events => stream.Events;

    private List<GeneratedEvent> Normal => [.. Events.Where(e => e.Label == 0)];

    /// <summary>Each machine's readings in time order.</summary>
    private List<List<GeneratedEvent>> ByMachine => [.. Events.GroupBy(e => e.Entity).Select(g => g.ToList())];

    private static string Status(GeneratedEvent e) => e.Texts[StatusColumn];

    [Fact]
    public void NormalReadingsKeepTheirCorrelations()
    {
        var normal = Normal;
        double Corr(List<GeneratedEvent> rows, int a, int b) =>
            GeneratedEvents.Correlation([.. rows.Select(e => e[a])], [.. rows.Select(e => e[b])]);

        Assert.True(Corr(normal, RpmColumn, CurrentColumn) > 0.8, $"corr(rpm, current) = {Corr(normal, RpmColumn, CurrentColumn):F3}");
        Assert.True(Corr(normal, RpmColumn, VibrationColumn) > 0.8, $"corr(rpm, vibration) = {Corr(normal, RpmColumn, VibrationColumn):F3}");
        Assert.True(Corr(normal, RpmColumn, TemperatureColumn) > 0.5, $"corr(rpm, temperature) = {Corr(normal, RpmColumn, TemperatureColumn):F3}");

        // Within running machines too, not only between running and stopped ones.
        var running = normal.Where(e => Status(e) == Running).ToList();
        Assert.True(Corr(running, RpmColumn, CurrentColumn) > 0.8, $"running corr(rpm, current) = {Corr(running, RpmColumn, CurrentColumn):F3}");

        // Stopped machines do not turn and barely vibrate; all three statuses occur.
        var stopped = normal.Where(e => Status(e) != Running).ToList();
        Assert.All(stopped, e => Assert.Equal(0, e[RpmColumn]));
        Assert.All(stopped, e => Assert.True(e[VibrationColumn] < 0.3));
        Assert.Equal([Idle, Maintenance, Running], normal.Select(Status).Distinct().Order());
        Assert.InRange(running.Count / (double)normal.Count, 0.7, 0.97);
    }

    [Fact]
    public void LoadFollowsADailyCycle()
    {
        var running = Normal.Where(e => Status(e) == Running).ToList();
        double MeanRpm(int fromHour, int toHour) =>
            running.Where(e => DateTime.UnixEpoch.AddMilliseconds(e.UnixMs).Hour is var h && h >= fromHour && h < toHour).Average(e => e[RpmColumn]);
        Assert.True(MeanRpm(12, 15) > 1.3 * MeanRpm(0, 3), $"afternoon {MeanRpm(12, 15):F0} rpm vs night {MeanRpm(0, 3):F0} rpm");
    }

    [Fact]
    public void TemperatureLagsBehindTheLoad()
    {
        // After a machine stops, it cools over several readings instead of jumping to the idle level.
        var firstIdle = new List<double>();
        var sixthIdle = new List<double>();
        foreach (var readings in ByMachine)
        {
            for (var i = 1; i + 6 < readings.Count; i++)
            {
                var window = readings.Skip(i - 1).Take(7).ToList();
                if (Status(window[0]) == Running && window.Skip(1).All(e => Status(e) == Idle) && window.All(e => e.Label == 0))
                {
                    firstIdle.Add(window[1][TemperatureColumn]);
                    sixthIdle.Add(window[6][TemperatureColumn]);
                }
            }
        }

        Assert.True(firstIdle.Count > 20, $"only {firstIdle.Count} running-to-idle transitions");
        Assert.True(firstIdle.Average() - sixthIdle.Average() > 3, $"first idle {firstIdle.Average():F1} °C, sixth {sixthIdle.Average():F1} °C");
    }

    [Fact]
    public void MachinesReportInTurnOncePerInterval()
    {
        for (var i = 0; i < 1000; i++)
            Assert.Equal(i % DefaultMachines, Events[i].Entity);
        foreach (var readings in ByMachine)
        {
            for (var i = 1; i < readings.Count; i++)
                Assert.Equal(ReadingIntervalMs, readings[i].UnixMs - readings[i - 1].UnixMs);
        }
    }

    [Fact]
    public void EachAnomalyShowsInItsOwnRow()
    {
        var anomalies = Events.Where(e => e.Label == 1).ToList();
        Assert.All(anomalies.Where(e => e.Kind == ImpossibleState), e =>
            Assert.True(Status(e) != Running && e[RpmColumn] >= 500 && e[CurrentColumn] > 1, $"{e}"));
        Assert.All(anomalies.Where(e => e.Kind == BrokenCorrelation), e =>
            Assert.True(Status(e) == Running && e[RpmColumn] >= 500 && e[CurrentColumn] < 0.5, $"{e}"));
        Assert.All(anomalies.Where(e => e.Kind == StuckSensor), e =>
            Assert.True((e[RpmColumn] >= 500 && e[VibrationColumn] < 0.1) || (e[RpmColumn] == 0 && e[VibrationColumn] > 0.8),
                $"stuck vibration {e[VibrationColumn]} at {e[RpmColumn]} rpm is plausible"));
    }

    [Fact]
    public void StuckAndDriftEpisodesSpanConsecutiveReadings()
    {
        var stuckRuns = 0;
        var driftRuns = 0;
        var rises = new List<double>();
        foreach (var readings in ByMachine)
        {
            for (var i = 1; i < readings.Count; i++)
            {
                var kind = readings[i].Kind;
                if (kind is not (StuckSensor or Drift) || readings[i - 1].Kind == kind)
                    continue;
                var length = readings.Skip(i).TakeWhile(e => e.Kind == kind).Count();
                if (i + length == readings.Count)
                    continue; // cut off by the end of the stream
                var run = readings.GetRange(i, length);
                if (kind == StuckSensor)
                {
                    stuckRuns++;
                    Assert.Equal(StuckLength, length);
                    Assert.Single(run.Select(e => e[VibrationColumn]).Distinct());
                }
                else
                {
                    driftRuns++;
                    Assert.Equal(DriftLength, length);
                    var rise = run[^1][TemperatureColumn] - readings[i - 1][TemperatureColumn];
                    // The sensor's offset grows from +8 to +35.5 °C; the machine's own temperature may move meanwhile.
                    Assert.True(rise > 10, $"temperature rose only {rise:F1} °C over a drift episode");
                    rises.Add(rise);
                }
            }
        }

        Assert.True(stuckRuns > 10 && driftRuns > 10, $"{stuckRuns} stuck and {driftRuns} drift episodes");
        Assert.True(rises.Average() > 25, $"drift episodes raised the temperature by {rises.Average():F1} °C on average");
    }

    [Fact]
    public void SpikesStandOutFromTheNeighbouringReadings()
    {
        var checkedSpikes = 0;
        foreach (var readings in ByMachine)
        {
            for (var i = 1; i + 1 < readings.Count; i++)
            {
                var (before, spike, after) = (readings[i - 1], readings[i], readings[i + 1]);
                if (spike.Kind != Spike || before.Label == 1 || after.Label == 1 || Status(before) != Status(spike) || Status(after) != Status(spike))
                    continue;
                checkedSpikes++;
                bool Jumps(int column, double by) =>
                    Math.Abs(spike[column] - before[column]) > by && Math.Abs(spike[column] - after[column]) > by;
                Assert.True(
                    Jumps(TemperatureColumn, 10) || Jumps(PressureColumn, 1.5) || Jumps(VibrationColumn, 1.5)
                    || Jumps(CurrentColumn, 0.5 * Math.Max(before[CurrentColumn], after[CurrentColumn])),
                    $"spike {spike} does not stand out from {before} and {after}");
            }
        }

        Assert.True(checkedSpikes > 100, $"only {checkedSpikes} spikes between normal readings");
    }

    /// <summary>One stream shared by the tests of this class (generated once, released after them; the tests only read it).</summary>
    public sealed class Stream : IDisposable
    {
        internal List<GeneratedEvent> Events { get; } = GeneratedEvents.Take(new SensorStream(seed: 1), 200_000);

        public void Dispose() => GeneratedEvents.Release(Events);
    }
}
