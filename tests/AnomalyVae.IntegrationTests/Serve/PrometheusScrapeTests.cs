using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using AnomalyVae.IntegrationTests.Infrastructure;

namespace AnomalyVae.IntegrationTests.Serve;

/// <summary>
/// A real Prometheus (Debian's 2.42, unpacked by deploy/local/setup.sh) scrapes serve's /metrics: the target is up,
/// and the counters it stores are the events serve committed.
/// </summary>
[Collection(InfrastructureCollection.Name)]
public sealed class PrometheusScrapeTests(TestInfrastructure infrastructure, ServeFixture fixture) : IClassFixture<ServeFixture>
{
    [Fact]
    public async Task Prometheus_scrapes_serve_and_stores_its_counters()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        var prometheus = Path.Combine(Environment.GetEnvironmentVariable("ANOMALYVAE_CACHE") is { Length: > 0 } cache
            ? cache : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "anomalyvae"), "prometheus", "usr", "bin", "prometheus");
        Assert.True(File.Exists(prometheus), $"{prometheus} is missing: run deploy/local/setup.sh");
        await using var stream = await ServeStream.CreateAsync(infrastructure, "prometheus", partitions: 2, cts.Token);
        var (topic, deadLetters, database) = stream;
        var directory = Path.Combine(fixture.Directory, $"prometheus-{Guid.NewGuid():N}");
        Directory.CreateDirectory(directory);
        Process? server = null;
        try
        {
            int servePort = ServeFixture.FreePort();
            var events = await ServeFixture.ProduceAsync(infrastructure, topic, ServeFixture.Events(3_000, seed: 71), cts.Token);
            await using var app = ServeFixture.Host(fixture.Configuration(infrastructure, topic, deadLetters, database, $"g-{Guid.NewGuid():N}", servePort));
            await app.StartAsync(cts.Token);
            await ServeFixture.WaitForOffsetsAsync(database, topic, events, cts.Token);

            int prometheusPort = ServeFixture.FreePort();
            await File.WriteAllTextAsync(Path.Combine(directory, "prometheus.yml"), $"""
                global:
                  scrape_interval: 1s
                scrape_configs:
                  - job_name: anomalyvae
                    static_configs:
                      - targets: ["127.0.0.1:{servePort}"]
                """, cts.Token);
            var start = new ProcessStartInfo(prometheus) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
            start.ArgumentList.Add($"--config.file={Path.Combine(directory, "prometheus.yml")}");
            start.ArgumentList.Add($"--storage.tsdb.path={Path.Combine(directory, "data")}");
            start.ArgumentList.Add($"--web.listen-address=127.0.0.1:{prometheusPort}");
            server = Process.Start(start) ?? throw new InvalidOperationException("could not start prometheus");
            var log = new System.Collections.Concurrent.ConcurrentQueue<string>();
            server.OutputDataReceived += (_, e) => log.Enqueue(e.Data ?? "");
            server.ErrorDataReceived += (_, e) => log.Enqueue(e.Data ?? "");
            server.BeginOutputReadLine();
            server.BeginErrorReadLine();

            using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{prometheusPort}"), Timeout = TimeSpan.FromSeconds(5) };
            // Scrapes come every second; a minute is room for a busy machine.
            double? up = null, consumed = null, buildInfo = null;
            var waited = Stopwatch.StartNew();
            while ((up != 1 || consumed != events.Count || buildInfo != 1) && waited.Elapsed < TimeSpan.FromMinutes(1))
            {
                Assert.False(server.HasExited, "prometheus exited:\n" + string.Join('\n', log));
                await Task.Delay(250, cts.Token);
                up = await QueryAsync(http, """up{job="anomalyvae"}""", cts.Token);
                consumed = await QueryAsync(http, """anomalyvae_events_consumed_total{detector="sensors"}""", cts.Token);
                buildInfo = await QueryAsync(http, """anomalyvae_build_info{onnxruntime=~"1\\.32\\..*",librdkafka=~"2\\.16\\..*"}""", cts.Token);
            }
            Assert.True(up == 1, $"target not up after {waited.Elapsed}: up = {up}\n{string.Join('\n', log)}");
            Assert.Equal(events.Count, consumed);
            Assert.Equal(1, buildInfo);
            // Every sample scraped so far parsed: Prometheus counts the ones it dropped.
            Assert.Equal(0, await QueryAsync(http, """scrape_samples_post_metric_relabeling{job="anomalyvae"} - scrape_samples_scraped{job="anomalyvae"}""", cts.Token));
            await app.StopAsync(cts.Token);
        }
        finally
        {
            if (server is { HasExited: false })
            {
                server.Kill();
                await server.WaitForExitAsync(CancellationToken.None);
            }
            server?.Dispose();
        }
    }

    /// <summary>The value of an instant query with one result; null while there is none (not scraped yet).</summary>
    private static async Task<double?> QueryAsync(HttpClient http, string query, CancellationToken cancellationToken)
    {
        string json;
        try
        {
            json = await http.GetStringAsync($"/api/v1/query?query={Uri.EscapeDataString(query)}", cancellationToken);
        }
        catch (HttpRequestException)
        {
            return null; // not listening yet
        }
        using var document = JsonDocument.Parse(json);
        var result = document.RootElement.GetProperty("data").GetProperty("result");
        if (result.GetArrayLength() == 0)
            return null;
        Assert.Equal(1, result.GetArrayLength());
        return double.Parse(result[0].GetProperty("value")[1].GetString()!, CultureInfo.InvariantCulture);
    }
}
