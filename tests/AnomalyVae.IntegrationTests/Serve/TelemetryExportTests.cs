using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Text;
using AnomalyVae.IntegrationTests.Infrastructure;
using AnomalyVae.Streaming;

namespace AnomalyVae.IntegrationTests.Serve;

/// <summary>
/// With Telemetry:OtlpEndpoint set, serve traces every batch (consume → score → commit, Npgsql's spans under
/// commit) and pushes traces and metrics over OTLP/HTTP. The receiver here only records what arrives: no collector
/// is packaged for Debian, and the payload's protobuf carries the span and metric names as plain bytes.
/// </summary>
[Collection(InfrastructureCollection.Name)]
public sealed class TelemetryExportTests(TestInfrastructure infrastructure, ServeFixture fixture) : IClassFixture<ServeFixture>
{
    [Fact]
    public async Task Batches_are_traced_and_exported_with_metrics_over_otlp()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        await using var stream = await ServeStream.CreateAsync(infrastructure, "otlp", partitions: 2, cts.Token);
        var (topic, deadLetters, database) = stream;
        int receiverPort = ServeFixture.FreePort();
        using var receiver = new HttpListener();
        receiver.Prefixes.Add($"http://127.0.0.1:{receiverPort}/");
        receiver.Start();
        var received = new ConcurrentQueue<(string Path, byte[] Body)>();
        var receiving = Task.Run(async () =>
        {
            while (receiver.IsListening)
            {
                HttpListenerContext context;
                try
                {
                    context = await receiver.GetContextAsync();
                }
                catch (Exception e) when (e is HttpListenerException or ObjectDisposedException)
                {
                    return;
                }
                using var body = new MemoryStream();
                await context.Request.InputStream.CopyToAsync(body);
                received.Enqueue((context.Request.Url!.AbsolutePath, body.ToArray()));
                context.Response.StatusCode = 200;
                context.Response.Close();
            }
        });

        // The spans of this process's batches, to check how they nest.
        var spans = new ConcurrentQueue<Activity>();
        using var listener = new ActivityListener
        {
            ShouldListenTo = source => source.Name is Telemetry.SourceName or "Npgsql",
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = spans.Enqueue,
        };
        ActivitySource.AddActivityListener(listener);
        try
        {
            var events = await ServeFixture.ProduceAsync(infrastructure, topic, ServeFixture.Events(2_000, seed: 73), cts.Token);
            var configuration = fixture.Configuration(infrastructure, topic, deadLetters, database, $"g-{Guid.NewGuid():N}", ServeFixture.FreePort());
            configuration["Telemetry:OtlpEndpoint"] = $"http://127.0.0.1:{receiverPort}";
            configuration["Telemetry:MetricsIntervalSeconds"] = "1";
            await using (var app = ServeFixture.Host(configuration))
            {
                await app.StartAsync(cts.Token);
                await ServeFixture.WaitForOffsetsAsync(database, topic, events, cts.Token);
                // The trace exporter sends every 5 s, the metric exporter every second; stopping flushes both.
                await app.StopAsync(cts.Token);
            }

            var commits = spans.Where(s => s.Source.Name == Telemetry.SourceName && s.OperationName == "commit").ToList();
            Assert.NotEmpty(commits);
            var byId = spans.ToDictionary(s => s.SpanId);
            foreach (var commit in commits)
            {
                Assert.True(byId.TryGetValue(commit.ParentSpanId, out var consume), "a commit span without its batch's consume span");
                Assert.Equal("consume", consume.OperationName);
                Assert.Equal(ActivityIdFormat.W3C, commit.IdFormat);
                Assert.Contains(spans, s => s.OperationName == "score" && s.ParentSpanId == consume.SpanId);
            }
            Assert.Contains(spans, s => s.Source.Name == "Npgsql" && commits.Any(c => c.SpanId == s.ParentSpanId));
            Assert.Equal(events.Count, spans.Where(s => s.OperationName == "consume").Sum(s => (int)s.GetTagItem("anomalyvae.events")!));

            var traces = received.Where(r => r.Path == "/v1/traces").Select(r => Encoding.Latin1.GetString(r.Body)).ToList();
            var metrics = received.Where(r => r.Path == "/v1/metrics").Select(r => Encoding.Latin1.GetString(r.Body)).ToList();
            Assert.Contains(traces, t => t.Contains("consume", StringComparison.Ordinal) && t.Contains("commit", StringComparison.Ordinal));
            Assert.Contains(traces, t => t.Contains("anomalyvae-serve", StringComparison.Ordinal));
            Assert.Contains(metrics, m => m.Contains("anomalyvae_events_scored", StringComparison.Ordinal));
        }
        finally
        {
            receiver.Stop();
            await receiving;
        }
    }
}
