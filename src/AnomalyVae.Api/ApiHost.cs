using AnomalyVae.Storage;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;

namespace AnomalyVae.Api;

/// <summary>The stand-alone API process (<c>anomalyvae api</c>): Kestrel on Api:Host:Api:Port serving <see cref="AnomalyApi"/>.</summary>
public static class ApiHost
{
    /// <summary>
    /// Largest request body Kestrel reads for any request. Each endpoint that reads a body lowers it to what it needs
    /// (32 KiB at most); the rest is headroom so that Kestrel can drain a small body sent where none is read (a 404 or
    /// 405) and the client receives the answer instead of a reset connection.
    /// </summary>
    public const long MaxRequestBodyBytes = 1024 * 1024;

    /// <summary>Builds the application from <paramref name="configuration"/> (added on top of the host defaults).</summary>
    public static WebApplication Build(IConfiguration configuration, Action<ILoggingBuilder>? logging = null)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions { ContentRootPath = AppContext.BaseDirectory });
        builder.Configuration.AddConfiguration(configuration);
        builder.Logging.AddConfiguration(builder.Configuration.GetSection("Logging"));
        if (logging is not null)
            logging(builder.Logging);
        else
            builder.Logging.AddSimpleConsole(o => o.SingleLine = true);
        builder.WebHost.UseKestrelCore();
        builder.WebHost.ConfigureKestrel(k => k.Limits.MaxRequestBodySize = MaxRequestBodyBytes);
        builder.Services.AddRoutingCore();
        builder.Services.AddAnomalyApi(builder.Configuration);
        var options = new ApiOptions();
        builder.Configuration.GetSection(ApiOptions.Section).Bind(options);
        if (options.Port is < 0 or > 65535)
            throw new InvalidOperationException($"Api:Port must be 0-65535, not {options.Port}.");
        builder.Services.AddHostFiltering(o =>
        {
            o.AllowedHosts = [.. options.EffectiveAllowedHosts];
            o.IncludeFailureMessage = false; // the status-code page writes a problem body instead
        });
        var host = options.Host is "*" or "0.0.0.0" ? "0.0.0.0" : options.Host;
        // HTTPS when Kestrel's own certificate keys are set (Kestrel:Certificates:Default:Path, KeyPath, Password):
        // then nothing is served over plain HTTP.
        var https = UsesHttps(builder.Configuration);
        if (https)
        {
            builder.WebHost.UseKestrelHttpsConfiguration();
            builder.WebHost.ConfigureKestrel(k => k.Configure(builder.Configuration.GetSection("Kestrel")));
        }
        builder.WebHost.UseUrls($"{(https ? "https" : "http")}://{(host == "0.0.0.0" ? "*" : host)}:{options.Port}");

        var app = builder.Build();
        app.UseAnomalyApiErrors();
        app.UseHostFiltering();
        app.UseRouting();
        app.MapAnomalyApi();
        return app;
    }

    /// <summary>Configuration key of the server certificate (PEM or PFX file); with it set, HTTP is served as HTTPS only.</summary>
    public const string CertificatePathKey = "Kestrel:Certificates:Default:Path";

    /// <summary>True when <see cref="CertificatePathKey"/> is configured.</summary>
    public static bool UsesHttps(IConfiguration configuration) => !string.IsNullOrWhiteSpace(configuration?[CertificatePathKey]);

    /// <summary>Migrates the database (unless Api:Migrate is false) and starts listening; returns the bound addresses.</summary>
    public static async Task<IReadOnlyList<string>> StartAsync(WebApplication app, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(app);
        var options = app.Services.GetRequiredService<IOptions<ApiOptions>>().Value;
        if (options.Migrate)
        {
            var migrator = new SchemaMigrator(app.Services.GetRequiredService<NpgsqlDataSource>(), app.Services.GetService<ILogger<SchemaMigrator>>());
            await migrator.MigrateAsync(cancellationToken);
        }
        await app.StartAsync(cancellationToken);
        var files = app.Services.GetRequiredService<DashboardFiles>();
        if (!files.Names.Contains("index.html"))
            app.Logger.LogWarning("The dashboard is not installed in {Root}; only the API is served", files.Root);
        app.Logger.LogInformation("Reads {ReadAccess}; accepted Host headers: {AllowedHosts}",
            options.ReadsNeedKey ? "need an API key" : "are open (the API listens on loopback only)", string.Join(", ", options.EffectiveAllowedHosts));
        return [.. app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses ?? []];
    }
}
