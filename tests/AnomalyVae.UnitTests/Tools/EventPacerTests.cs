using System.Diagnostics;
using AnomalyVae.Tools;

namespace AnomalyVae.UnitTests.Tools;

public class EventPacerTests
{
    [Fact]
    public void BucketStartsFullRefillsAtTheRateAndCapsAtCapacity()
    {
        var bucket = new TokenBucket(rate: 100, capacity: 5);
        Assert.Equal(3, bucket.Take(0, 3));
        Assert.Equal(2, bucket.Take(0, 10));
        Assert.Equal(0, bucket.Take(0, 10));
        Assert.Equal(0.01, bucket.SecondsUntilAvailable(0), 12);

        // 25 ms at 100/s is 2.5 tokens: two whole ones now, the half stays for later.
        Assert.Equal(2, bucket.Take(0.025, 10));
        Assert.Equal(0.005, bucket.SecondsUntilAvailable(0.025), 12);
        Assert.Equal(1, bucket.Take(0.031, 10));

        // A long pause fills the bucket only up to its capacity.
        Assert.Equal(5, bucket.Take(10, 100));
        Assert.Equal(0, bucket.Take(10, 100));
    }

    [Fact]
    public void ClockGoingBackDoesNotDrainOrFillTheBucket()
    {
        var bucket = new TokenBucket(rate: 10, capacity: 2);
        Assert.Equal(2, bucket.Take(1, 2));
        Assert.Equal(0, bucket.Take(0.5, 2));
        Assert.Equal(1, bucket.Take(1.1, 2));
    }

    [Fact]
    public void BucketRejectsNonsense()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new TokenBucket(0, 5));
        Assert.Throws<ArgumentOutOfRangeException>(() => new TokenBucket(double.PositiveInfinity, 5));
        Assert.Throws<ArgumentOutOfRangeException>(() => new TokenBucket(10, 0.5));
    }

    [Fact]
    public async Task CountLimitReleasesExactlyThatManyEvents()
    {
        var pacer = new EventPacer(count: 1000);
        var batches = new List<int>();
        int n;
        while ((n = await pacer.NextBatchAsync(300, CancellationToken.None)) > 0)
            batches.Add(n);
        Assert.Equal([300, 300, 300, 100], batches);
        Assert.Equal(1000, pacer.Released);
        Assert.Equal(0, await pacer.NextBatchAsync(300, CancellationToken.None));
    }

    [Fact]
    public async Task DurationLimitEndsTheRunAndTheClockStartsAtTheFirstBatch()
    {
        var time = new ManualTime();
        var pacer = new EventPacer(count: null, duration: TimeSpan.FromSeconds(2), time: time);
        time.Advance(TimeSpan.FromSeconds(5)); // before the first batch: set-up time does not count
        Assert.Equal(TimeSpan.Zero, pacer.Elapsed);
        Assert.Equal(64, await pacer.NextBatchAsync(64, CancellationToken.None));
        time.Advance(TimeSpan.FromSeconds(1.9));
        Assert.Equal(64, await pacer.NextBatchAsync(64, CancellationToken.None));
        time.Advance(TimeSpan.FromSeconds(0.1));
        Assert.Equal(0, await pacer.NextBatchAsync(64, CancellationToken.None));
        Assert.Equal(128, pacer.Released);
        Assert.Equal(TimeSpan.FromSeconds(2), pacer.Elapsed);
    }

    [Fact]
    public async Task RateLimitPacesTheRun()
    {
        // 300 events at 1000/s with a 10-event burst allowance cannot finish in less than 0.29 s.
        var pacer = new EventPacer(count: 300, ratePerSecond: 1000);
        var clock = Stopwatch.StartNew();
        long released = 0;
        int n;
        while ((n = await pacer.NextBatchAsync(64, CancellationToken.None)) > 0)
        {
            Assert.True(n <= 10, $"a batch of {n} exceeds the burst allowance");
            released += n;
        }

        Assert.Equal(300, released);
        Assert.True(clock.Elapsed.TotalSeconds >= 0.29, $"300 events at 1000/s took only {clock.Elapsed.TotalSeconds:F3} s");
    }

    [Fact]
    public async Task CancellationStopsAWaitingPacer()
    {
        var pacer = new EventPacer(count: 1000, ratePerSecond: 1);
        Assert.Equal(2, await pacer.NextBatchAsync(10, CancellationToken.None)); // the burst allowance
        using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(50));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await pacer.NextBatchAsync(10, cts.Token));
    }

    [Fact]
    public void PacerRejectsRunsThatNeverEndOrMakeNoSense()
    {
        Assert.Throws<ArgumentException>(() => new EventPacer(count: null, duration: null, ratePerSecond: 100));
        Assert.Throws<ArgumentOutOfRangeException>(() => new EventPacer(count: 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new EventPacer(count: 10, duration: TimeSpan.Zero));
        Assert.Throws<ArgumentOutOfRangeException>(() => new EventPacer(count: 10, ratePerSecond: 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new EventPacer(count: 10, ratePerSecond: double.NaN));
    }

    /// <summary>A clock that moves only when told to (no timers: the tests using it never wait).</summary>
    private sealed class ManualTime : TimeProvider
    {
        private long _ticks;

        public override long TimestampFrequency => TimeSpan.TicksPerSecond;

        public override long GetTimestamp() => _ticks;

        public void Advance(TimeSpan by) => _ticks += by.Ticks;
    }
}
