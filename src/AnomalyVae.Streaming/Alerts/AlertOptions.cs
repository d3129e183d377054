using System.Globalization;

namespace AnomalyVae.Streaming;

/// <summary>A detector's alerts (section <c>Detectors:N:Alerts</c>).</summary>
public sealed class DetectorAlertOptions
{
    /// <summary>Kafka topic for alert records (incident opened/closed, see schemas/alert.schema.json); unset = none.</summary>
    public string? Topic { get; set; }

    /// <summary>Also publish one record per anomaly to <see cref="Topic"/> (a flood at high flag rates: off by default).</summary>
    public bool EveryAnomaly { get; set; }

    /// <summary>Send this detector's incidents to Alertmanager (when <c>Alertmanager:Url</c> is set).</summary>
    public bool Alertmanager { get; set; } = true;
}

/// <summary>Prometheus Alertmanager (section <c>Alertmanager</c>); off unless <see cref="Url"/> is set.</summary>
public sealed class AlertmanagerOptions
{
    /// <summary>Alertmanager's base URL, e.g. http://alertmanager:9093 (alerts are posted to /api/v2/alerts).</summary>
    public string? Url { get; set; }

    /// <summary>Alerts waiting to be posted; when full, new ones are dropped and counted (scoring never waits).</summary>
    public int QueueCapacity { get; set; } = 1000;

    /// <summary>How often every open incident is posted again. Alertmanager resolves an alert that is not re-sent within
    /// its resolve_timeout (5 minutes by default), so this must be well below it.</summary>
    public TimeSpan ResendInterval { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>Timeout of one POST.</summary>
    public TimeSpan RequestTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>Retries of a failed POST (exponential back-off from 0.5 s) before its alerts are dropped and counted.</summary>
    public int MaxRetries { get; set; } = 3;

    /// <summary>How long the circuit stays open after repeated failures: posts fail at once meanwhile (the queue drains).</summary>
    public TimeSpan BreakDuration { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>The dashboard's base URL (<c>anomalyvae api</c>), for the alerts' dashboard link; unset = no link.</summary>
    public string? DashboardUrl { get; set; }

    /// <summary>An incident whose smallest p-value is at most this is "critical".</summary>
    public double CriticalPValue { get; set; } = 1e-6;

    /// <summary>At most this (and above <see cref="CriticalPValue"/>) is "warning"; above it, "info".</summary>
    public double WarningPValue { get; set; } = 1e-4;

    internal bool Enabled => !string.IsNullOrWhiteSpace(Url);

    /// <summary>The severity label of an incident whose smallest p-value is <paramref name="minPValue"/>.</summary>
    public string Severity(double minPValue) => minPValue <= CriticalPValue ? "critical" : minPValue <= WarningPValue ? "warning" : "info";

    internal IEnumerable<string> Problems()
    {
        if (Url is { Length: > 0 } url && !(Uri.TryCreate(url, UriKind.Absolute, out var uri) && uri.Scheme is "http" or "https"))
            yield return "Alertmanager:Url must be an absolute http(s) URL, e.g. http://alertmanager:9093.";
        if (DashboardUrl is { Length: > 0 } dashboard && !(Uri.TryCreate(dashboard, UriKind.Absolute, out var d) && d.Scheme is "http" or "https"))
            yield return "Alertmanager:DashboardUrl must be an absolute http(s) URL.";
        if (QueueCapacity is < 1 or > 1_000_000)
            yield return string.Create(CultureInfo.InvariantCulture, $"Alertmanager:QueueCapacity is {QueueCapacity}; it must be between 1 and 1000000.");
        if (ResendInterval < TimeSpan.FromSeconds(1))
            yield return "Alertmanager:ResendInterval must be at least 00:00:01.";
        if (RequestTimeout < TimeSpan.FromMilliseconds(100) || RequestTimeout > TimeSpan.FromMinutes(5))
            yield return "Alertmanager:RequestTimeout must be between 00:00:00.1 and 00:05:00.";
        if (MaxRetries is < 0 or > 20)
            yield return "Alertmanager:MaxRetries must be between 0 and 20.";
        if (BreakDuration < TimeSpan.FromSeconds(1))
            yield return "Alertmanager:BreakDuration must be at least 00:00:01.";
        if (!(CriticalPValue >= 0 && CriticalPValue <= WarningPValue && WarningPValue <= 1))
            yield return "Alertmanager:CriticalPValue and WarningPValue must satisfy 0 <= CriticalPValue <= WarningPValue <= 1.";
    }
}
