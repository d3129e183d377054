namespace AnomalyVae.Api;

/// <summary>
/// Configuration section "Api" of the HTTP API.
/// <list type="bullet">
/// <item><c>Api:Port</c> (8081): port of the stand-alone <c>anomalyvae api</c> host (0 = any free port).</item>
/// <item><c>Api:Host</c> ("localhost"): address it listens on; "0.0.0.0" or "*" for all interfaces (containers).</item>
/// <item><c>Api:AllowedHosts</c> (localhost, 127.0.0.1, [::1]): Host header values accepted; anything else gets 400, so
/// a web page cannot reach the API through DNS rebinding. Name the host names clients use when serving beyond loopback.</item>
/// <item><c>Api:Keys</c> (empty): API keys; POST endpoints need header <c>X-Api-Key</c> equal to one of them. With no
/// keys configured every write is refused (401), so a fresh deployment is read-only until keys are set.</item>
/// <item><c>Api:NamedKeys:&lt;name&gt;</c>: keys with a name; feedback written with one records "api-key:&lt;name&gt;".</item>
/// <item><c>Api:KeyIdSecret</c> (unset): server-side secret of the HMAC that identifies unnamed keys in stored feedback.</item>
/// <item><c>Api:RequireKeyForReads</c> (unset = true unless the API listens on loopback only): GET endpoints need a key.</item>
/// <item><c>Api:FailedAuthLimit</c> (10) failed key attempts per source per <c>Api:FailedAuthWindowSeconds</c> (60)
/// before the source gets 429.</item>
/// <item><c>Api:Migrate</c> (true): the stand-alone host applies the database migrations at start.</item>
/// </list>
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
