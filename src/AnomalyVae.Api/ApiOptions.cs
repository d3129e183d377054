namespace AnomalyVae.Api;

/// <summary>
/// Configuration section "Api" of the HTTP API.
/// <list type="bullet">
/// <item><c>Api:Port</c> (8081): port of the stand-alone <c>anomalyvae api</c> host (0 = any free port).</item>
/// <item><c>Api:Host</c> ("localhost"): address it listens on; "0.0.0.0" or "*" for all interfaces (containers).</item>
/// <item><c>Api:Keys</c> (empty): API keys; POST endpoints need header <c>X-Api-Key</c> equal to one of them. With no
/// keys configured every write is refused (401), so a fresh deployment is read-only until keys are set.</item>
/// <item><c>Api:RequireKeyForReads</c> (false): when true, GET endpoints need a key too (the dashboard then asks for it).</item>
/// <item><c>Api:Migrate</c> (true): the stand-alone host applies the database migrations at start.</item>
/// </list>
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
