using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace AnomalyVae.Streaming;

/// <summary>serve's alert services: the publisher always, Alertmanager's sender when <c>Alertmanager:Url</c> is set (for at
/// least one detector).</summary>
internal static class Alerts
{
    public static void Add(IServiceCollection services, ServiceOptions options)
    {
        services.AddSingleton<AlertMetrics>();
        var detectors = options.Detectors.Where(d => d.Alerts.Alertmanager).Select(d => d.Name).ToArray();
        bool alertmanager = options.Alertmanager.Enabled && detectors.Length > 0;
        if (alertmanager)
        {
            services.AddSingleton(sp => new AlertmanagerSender(options.Alertmanager, detectors, sp.GetRequiredService<NpgsqlDataSource>(),
                sp.GetRequiredService<AlertMetrics>(), sp.GetRequiredService<ILogger<AlertmanagerSender>>()));
        }
        services.AddSingleton(sp => new AlertPublisher(sp.GetRequiredService<KafkaOptions>(), options.Alertmanager,
            alertmanager ? sp.GetRequiredService<AlertmanagerSender>() : null, sp.GetRequiredService<AlertMetrics>(),
            sp.GetRequiredService<ILogger<AlertPublisher>>()));
    }

    /// <summary>Runs the sender, when there is one. Registered after the migrations (its first re-send reads incidents) and
    /// before the detector workers, so that it stops after them and still takes their last commits' alerts.</summary>
    public static void AddSender(IServiceCollection services, ServiceOptions options)
    {
        if (options.Alertmanager.Enabled && options.Detectors.Any(d => d.Alerts.Alertmanager))
            services.AddSingleton<IHostedService>(sp => sp.GetRequiredService<AlertmanagerSender>());
    }
}
