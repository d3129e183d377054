using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Json;
using System.Text.Json;
using AnomalyVae.IntegrationTests.Serve;
using AnomalyVae.Tests;

namespace AnomalyVae.IntegrationTests.Infrastructure;

/// <summary>
/// A real Alertmanager (Debian's prometheus-alertmanager 0.25, unpacked by deploy/local/setup.sh) with its own
/// configuration and storage under $ANOMALYVAE_DATA/alertmanager-&lt;id&gt;, on port $ANOMALYVAE_TEST_ALERTMANAGER_PORT
/// (else a free one), its cluster listener off. Its one receiver notifies nobody: the tests read its API.
/// </summary>
internal sealed class AlertmanagerProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly ConcurrentQueue<string> _log = new();
    private readonly string _directory;

    private AlertmanagerProcess(Process process, string directory, int port)
    {
        _process = process;
        _directory = directory;
        Port = port;
        Url = $"http://127.0.0.1:{port}";
        Http = new HttpClient { BaseAddress = new Uri(Url), Timeout = TimeSpan.FromSeconds(5) };
        process.OutputDataReceived += (_, e) => _log.Enqueue(e.Data ?? "");
        process.ErrorDataReceived += (_, e) => _log.Enqueue(e.Data ?? "");
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
    }

    public int Port { get; }

    public string Url { get; }

    public HttpClient Http { get; }

    public string Log => string.Join('\n', _log);

    public static string Binary => Path.Combine(Environment.GetEnvironmentVariable("ANOMALYVAE_CACHE") is { Length: > 0 } cache
        ? cache : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "anomalyvae"),
        "alertmanager", "usr", "bin", "prometheus-alertmanager");

    /// <summary>A port for Alertmanager: $ANOMALYVAE_TEST_ALERTMANAGER_PORT, else a free one.</summary>
    public static int ChoosePort() => Environment.GetEnvironmentVariable("ANOMALYVAE_TEST_ALERTMANAGER_PORT") is { Length: > 0 } p
        ? int.Parse(p, CultureInfo.InvariantCulture) : ServeFixture.FreePort();

    /// <summary>Starts it and waits (generously) until /-/ready answers.</summary>
    public static async Task<AlertmanagerProcess> StartAsync(CancellationToken cancellationToken)
    {
        Assert.True(File.Exists(Binary), $"{Binary} is missing: run deploy/local/setup.sh");
        var data = Environment.GetEnvironmentVariable("ANOMALYVAE_DATA") is { Length: > 0 } d ? d : RepositoryFiles.Path(".data", "test");
        var directory = Path.Combine(data, $"alertmanager-{Guid.NewGuid():N}");
        Directory.CreateDirectory(directory);
        // resolve_timeout is long on purpose: an alert resolved within a test was resolved by serve's endsAt, not by silence.
        await File.WriteAllTextAsync(Path.Combine(directory, "alertmanager.yml"), """
            global:
              resolve_timeout: 10m
            route:
              receiver: nobody
              group_wait: 1s
            receivers:
              - name: nobody
            """, cancellationToken);
        int port = ChoosePort();
        var start = new ProcessStartInfo(Binary) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add($"--config.file={Path.Combine(directory, "alertmanager.yml")}");
        start.ArgumentList.Add($"--storage.path={Path.Combine(directory, "data")}");
        start.ArgumentList.Add($"--web.listen-address=127.0.0.1:{port}");
        start.ArgumentList.Add("--cluster.listen-address=");
        var process = Process.Start(start) ?? throw new InvalidOperationException("could not start prometheus-alertmanager");
        var server = new AlertmanagerProcess(process, directory, port);
        var waited = Stopwatch.StartNew();
        while (true)
        {
            Assert.False(process.HasExited, "prometheus-alertmanager exited:\n" + server.Log);
            try
            {
                using var ready = await server.Http.GetAsync("/-/ready", cancellationToken);
                if (ready.IsSuccessStatusCode)
                    return server;
            }
            catch (HttpRequestException)
            {
                // not listening yet
            }
            catch (TaskCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                // a slow answer on a busy machine
            }
            Assert.True(waited.Elapsed < TimeSpan.FromMinutes(1), "Alertmanager not ready after a minute:\n" + server.Log);
            await Task.Delay(100, cancellationToken);
        }
    }

    /// <summary>The alerts GET /api/v2/alerts returns (active, unresolved ones), filtered by label matchers like <c>entity="x"</c>.</summary>
    public async Task<List<JsonElement>> AlertsAsync(CancellationToken cancellationToken, params string[] filters)
    {
        var query = string.Join('&', filters.Select(f => "filter=" + Uri.EscapeDataString(f)));
        var alerts = await Http.GetFromJsonAsync<JsonElement>("/api/v2/alerts?" + query, cancellationToken);
        return [.. alerts.EnumerateArray().Select(a => a.Clone())];
    }

    public async ValueTask DisposeAsync()
    {
        Http.Dispose();
        if (!_process.HasExited)
        {
            _process.Kill();
            await _process.WaitForExitAsync(CancellationToken.None);
        }
        _process.Dispose();
        try
        {
            Directory.Delete(_directory, recursive: true);
        }
        catch (IOException)
        {
            // best effort: the data directory is cleaned with .data/test
        }
    }
}
