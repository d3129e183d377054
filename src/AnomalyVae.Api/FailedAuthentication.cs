using System.Threading.RateLimiting;
using Microsoft.Extensions.Logging;

namespace AnomalyVae.Api;

/// <summary>
/// Counts failed API key attempts per source address with ASP.NET Core's rate limiter (a fixed window per source):
/// past <see cref="ApiOptions.FailedAuthLimit"/> failures in a window, the source gets 429 until the window ends,
/// whatever key it sends, so keys cannot be guessed at request speed. Each counted failure is logged as a warning
/// naming the source and what was wrong (never the key); throttled attempts are not logged again, so a flood
/// cannot flood the log.
/// </summary>
public sealed class FailedAuthentication : IDisposable
{
    private readonly PartitionedRateLimiter<string> _limiter;
    private readonly ILogger _logger;

    public FailedAuthentication(ApiOptions options, ILogger<FailedAuthentication> logger)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.FailedAuthLimit < 1)
            throw new InvalidOperationException($"Api:FailedAuthLimit must be at least 1, not {options.FailedAuthLimit}.");
        if (options.FailedAuthWindowSeconds < 1)
            throw new InvalidOperationException($"Api:FailedAuthWindowSeconds must be at least 1, not {options.FailedAuthWindowSeconds}.");
        _logger = logger;
        Window = TimeSpan.FromSeconds(options.FailedAuthWindowSeconds);
        var limit = options.FailedAuthLimit;
        _limiter = PartitionedRateLimiter.Create<string, string>(source => RateLimitPartition.GetFixedWindowLimiter(source, _ =>
            new FixedWindowRateLimiterOptions { PermitLimit = limit, Window = Window, QueueLimit = 0, AutoReplenishment = true }));
    }

    public TimeSpan Window { get; }

    /// <summary>True when <paramref name="source"/> has used up its failures for this window.</summary>
    public bool IsThrottled(string source)
    {
        using var lease = _limiter.AttemptAcquire(source, 0);
        return !lease.IsAcquired;
    }

    /// <summary>Records a failure; false when it was one too many (the caller answers 429).</summary>
    public bool RecordFailure(string source, string reason)
    {
        using var lease = _limiter.AttemptAcquire(source, 1);
        if (lease.IsAcquired)
        {
            _logger.LogWarning("Failed API key attempt from {Source}: {Reason}", source, reason);
            return true;
        }
        return false;
    }

    public void Dispose() => _limiter.Dispose();
}
