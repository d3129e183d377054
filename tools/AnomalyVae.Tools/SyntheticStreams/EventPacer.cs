namespace AnomalyVae.Tools;

/// <summary>
/// Decides how many events a generation run may emit next: it stops the run after <c>count</c> events or once
/// <c>duration</c> has passed (whichever comes first), and, with a rate, paces emission through a
/// <see cref="TokenBucket"/> holding 10 ms worth of events (at least two), so a latency benchmark sees a smooth stream rather
/// than bursts. Callers loop: <c>while ((n = await pacer.NextBatchAsync(max, ct)) &gt; 0) emit n events</c>.
/// </summary>
public sealed class EventPacer
{
    /// <summary>Burst allowance of the bucket, in seconds of the rate.</summary>
    public const double BurstSeconds = 0.010;

    private readonly long? _count;
    private readonly TimeSpan? _duration;
    private readonly TokenBucket? _bucket;
    private readonly TimeProvider _time;
    private long? _started;

    /// <param name="count">Stop after this many events (null: no limit; then a duration is required).</param>
    /// <param name="duration">Stop once this much time has passed.</param>
    /// <param name="ratePerSecond">Emit at most this many events per second (null: as fast as possible).</param>
    /// <param name="time">The clock (tests); the system clock when null.</param>
    public EventPacer(long? count, TimeSpan? duration = null, double? ratePerSecond = null, TimeProvider? time = null)
    {
        if (count is null && duration is null)
            throw new ArgumentException("a run needs a count, a duration or both; otherwise it never ends");
        if (count is <= 0)
            throw new ArgumentOutOfRangeException(nameof(count), count, "the count must be positive");
        if (duration is { } d && d <= TimeSpan.Zero)
            throw new ArgumentOutOfRangeException(nameof(duration), duration, "the duration must be positive");
        if (ratePerSecond is { } r && !(r > 0 && double.IsFinite(r)))
            throw new ArgumentOutOfRangeException(nameof(ratePerSecond), ratePerSecond, "the rate must be a positive number");

        _count = count;
        _duration = duration;
        // At least two tokens, so a timer that oversleeps part of a token period does not lose that part.
        _bucket = ratePerSecond is { } rate ? new TokenBucket(rate, Math.Max(2, rate * BurstSeconds)) : null;
        _time = time ?? TimeProvider.System;
    }

    /// <summary>Events released so far.</summary>
    public long Released { get; private set; }

    /// <summary>
    /// Time since the first <see cref="NextBatchAsync"/> call (zero before it): the clock starts when the caller is
    /// ready to emit, so connecting to a broker counts neither against the duration nor the rate.
    /// </summary>
    public TimeSpan Elapsed => _started is { } started ? _time.GetElapsedTime(started) : TimeSpan.Zero;

    /// <summary>
    /// How many events to emit now (1..<paramref name="max"/>), waiting first while the rate allows none;
    /// 0 when the run is over.
    /// </summary>
    public async ValueTask<int> NextBatchAsync(int max, CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(max);
        _started ??= _time.GetTimestamp();
        var allowed = _count is { } count ? (int)Math.Min(max, count - Released) : max;
        while (allowed > 0)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var elapsed = Elapsed;
            if (_duration is { } duration && elapsed >= duration)
                return 0;
            if (_bucket is null)
                return Release(allowed);

            var taken = _bucket.Take(elapsed.TotalSeconds, allowed);
            if (taken > 0)
                return Release(taken);

            var wait = TimeSpan.FromSeconds(_bucket.SecondsUntilAvailable(elapsed.TotalSeconds));
            if (_duration is { } limit && elapsed + wait > limit)
                wait = limit - elapsed;
            await Task.Delay(wait < TimeSpan.FromMilliseconds(1) ? TimeSpan.FromMilliseconds(1) : wait, _time, cancellationToken);
        }

        return 0;
    }

    private int Release(int n)
    {
        Released += n;
        return n;
    }
}

/// <summary>
/// Tokens accrue at <see cref="Rate"/> per second up to <see cref="Capacity"/>; taking one allows one event.
/// Time is passed in (seconds since start), so the arithmetic is testable without a clock. Starts full.
/// </summary>
public sealed class TokenBucket
{
    private double _tokens;
    private double _last;

    public TokenBucket(double rate, double capacity)
    {
        if (!(rate > 0 && double.IsFinite(rate)))
            throw new ArgumentOutOfRangeException(nameof(rate), rate, "the rate must be a positive number");
        if (!(capacity >= 1 && double.IsFinite(capacity)))
            throw new ArgumentOutOfRangeException(nameof(capacity), capacity, "the capacity must be at least one token");
        Rate = rate;
        Capacity = capacity;
        _tokens = capacity;
    }

    public double Rate { get; }

    public double Capacity { get; }

    /// <summary>Takes up to <paramref name="max"/> whole tokens available at <paramref name="now"/> (seconds); returns how many.</summary>
    public int Take(double now, int max)
    {
        Refill(now);
        var taken = (int)Math.Min(max, Math.Floor(_tokens));
        _tokens -= taken;
        return taken;
    }

    /// <summary>Seconds from <paramref name="now"/> until one whole token is available (0 if one is).</summary>
    public double SecondsUntilAvailable(double now)
    {
        Refill(now);
        return _tokens >= 1 ? 0 : (1 - _tokens) / Rate;
    }

    private void Refill(double now)
    {
        // A clock that steps back (it should not) must not drain the bucket.
        if (now > _last)
        {
            _tokens = Math.Min(Capacity, _tokens + ((now - _last) * Rate));
            _last = now;
        }
    }
}
