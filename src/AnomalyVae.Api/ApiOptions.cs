namespace AnomalyVae.Api;

/// <summary>
/// Configuration section "Api" of the HTTP API (keys, defaults and meaning: docs/configuration.md and docs/security.md).
/// With no keys every write is refused (401), so a fresh deployment is read-only until keys are set.
/// </summary>
public sealed class ApiOptions
{
    public const string Section = "Api";
    public const string KeyHeader = "X-Api-Key";
    public const int DefaultPort = 8081;

    /// <summary>Host names accepted when <see cref="AllowedHosts"/> is not configured.</summary>
    public static readonly IReadOnlyList<string> LoopbackHosts = ["localhost", "127.0.0.1", "[::1]"];

    public int Port { get; set; } = DefaultPort;

    public string Host { get; set; } = "localhost";

    public List<string> AllowedHosts { get; set; } = [];

    public List<string> Keys { get; set; } = [];

    public Dictionary<string, string> NamedKeys { get; set; } = new(StringComparer.Ordinal);

    public string? KeyIdSecret { get; set; }

    public bool? RequireKeyForReads { get; set; }

    public int FailedAuthLimit { get; set; } = 10;

    public int FailedAuthWindowSeconds { get; set; } = 60;

    public bool Migrate { get; set; } = true;

    /// <summary>The Host header values accepted: <see cref="AllowedHosts"/>, or the loopback names when none are set.</summary>
    public IReadOnlyList<string> EffectiveAllowedHosts =>
        AllowedHosts.Where(h => !string.IsNullOrWhiteSpace(h)).Select(h => h.Trim()).ToList() is { Count: > 0 } hosts ? hosts : LoopbackHosts;

    /// <summary>True when <see cref="Host"/> is a loopback address or name (nothing beyond this machine can connect).</summary>
    public bool ListensOnLoopbackOnly =>
        Host is "localhost" || (System.Net.IPAddress.TryParse(Host.Trim('[', ']'), out var address) && System.Net.IPAddress.IsLoopback(address));

    /// <summary>
    /// Whether GET endpoints need a key: as configured, else only when the API can be reached from other machines.
    /// Anomalies hold the events as received (payments, device ids), so whoever can reach the port should not read
    /// them anonymously; on loopback only this machine's users can, and they can usually read the database too.
    /// </summary>
    public bool ReadsNeedKey => RequireKeyForReads ?? !ListensOnLoopbackOnly;
}
