namespace AnomalyVae.Api;

/// <summary>
/// Configuration section "Api" of the HTTP API (keys, defaults and meaning: docs/query-api.md#configuration). With no
/// <see cref="Keys"/> every write is refused (401), so a fresh deployment is read-only until keys are set.
/// </summary>
public sealed class ApiOptions
{
    public const string Section = "Api";
    public const string KeyHeader = "X-Api-Key";
    public const int DefaultPort = 8081;

    public int Port { get; set; } = DefaultPort;

    public string Host { get; set; } = "localhost";

    public List<string> Keys { get; set; } = [];

    public bool RequireKeyForReads { get; set; }

    public bool Migrate { get; set; } = true;
}
