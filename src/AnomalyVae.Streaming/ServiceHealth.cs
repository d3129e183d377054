using System.Collections.Concurrent;

namespace AnomalyVae.Streaming;

/// <summary>
/// What the workers report about themselves for /readyz: running or not, and why a detector cannot make
/// progress (database unavailable, faulted). Also carries the process exit code: a worker that fails for
/// good makes <c>serve</c> exit non-zero.
/// </summary>
public sealed class ServiceHealth
{
    private readonly ConcurrentDictionary<string, string> _problems = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, bool> _running = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, int[]> _assignments = new(StringComparer.Ordinal);
    private volatile int _exitCode;

    /// <summary>0 unless a worker failed for good.</summary>
    public int ExitCode => _exitCode;

    public void SetRunning(string detector, bool running) => _running[detector] = running;

    public bool IsRunning(string detector) => _running.TryGetValue(detector, out var running) && running;

    /// <summary>Records the partitions <paramref name="detector"/> owns now (shown by /readyz).</summary>
    public void SetAssignment(string detector, IEnumerable<int> partitions) => _assignments[detector] = [.. partitions.Order()];

    /// <summary>The partitions each detector owns.</summary>
    public IReadOnlyDictionary<string, int[]> Assignments => new Dictionary<string, int[]>(_assignments, StringComparer.Ordinal);

    /// <summary>Marks <paramref name="detector"/> as unable to progress, with the reason shown by /readyz.</summary>
    public void SetProblem(string detector, string problem) => _problems[detector] = problem;

    public void ClearProblem(string detector) => _problems.TryRemove(detector, out _);

    public void SetFaulted(string detector, string problem)
    {
        _problems[detector] = "faulted: " + problem;
        _exitCode = 1;
    }

    /// <summary>Current problems by detector.</summary>
    public IReadOnlyDictionary<string, string> Problems => new Dictionary<string, string>(_problems, StringComparer.Ordinal);
}
