using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace AnomalyVae.Streaming;

/// <summary>serve's alert services: the publisher always, Alertmanager's sender when <c>Alertmanager:Url</c> is set.</summary>
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
            services.AddSingleton<IHostedService>(sp => sp.GetRequiredService<AlertmanagerSender>());
        }
        services.AddSingleton(sp => new AlertPublisher(sp.GetRequiredService<KafkaOptions>(), options.Alertmanager,
            alertmanager ? sp.GetRequiredService<AlertmanagerSender>() : null, sp.GetRequiredService<AlertMetrics>(),
            sp.GetRequiredService<ILogger<AlertPublisher>>()));
    }
}
