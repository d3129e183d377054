using System.Buffers;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using System.Threading.Channels;
using AnomalyVae.Storage;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Npgsql;
using Polly;
using Polly.CircuitBreaker;
using Polly.Retry;
using Polly.Timeout;

namespace AnomalyVae.Streaming;

/// <summary>An answer from Alertmanager other than 2xx.</summary>
public sealed class AlertmanagerException(HttpStatusCode status, string body)
    : Exception($"Alertmanager answered {(int)status} {status}: {body}")
{
    public HttpStatusCode Status { get; } = status;

    /// <summary>Worth retrying: the server's trouble (5xx) or throttling (429), not a request it refuses.</summary>
    public bool IsTransient => (int)Status >= 500 || Status == HttpStatusCode.TooManyRequests;
}

/// <summary>
/// Posts incidents to Alertmanager (POST /api/v2/alerts) from a bounded in-memory queue: committed transitions are
/// enqueued without waiting (a full queue drops and counts them), one loop posts them in groups through retries and a
/// circuit breaker (Polly), and every <see cref="AlertmanagerOptions.ResendInterval"/> the open incidents (and those closed
/// since the previous round) are read from PostgreSQL and posted again. Alertmanager resolves an alert it does not hear
/// about within its resolve_timeout, so the re-sends keep open incidents firing, and they also deliver what a crash or a
/// drop lost. One alert per incident: labels alertname, detector, entity, severity and incident (its first event).
/// </summary>
public sealed class AlertmanagerSender : BackgroundService
{
    public const string AlertName = "AnomalyVaeIncident";
    private const int MaxPerPost = 100;

    private readonly AlertmanagerOptions _options;
    private readonly string[] _detectors;
    private readonly NpgsqlDataSource _dataSource;
    private readonly AlertMetrics _metrics;
    private readonly ILogger _logger;
    private readonly HttpClient _http;
    private readonly ResiliencePipeline _pipeline;
    private readonly Channel<Item> _queue;
    // Owned by the send loop: the severity each open incident was last posted with (a change resolves the old label
    // set), and the incidents closed lately (a re-send read before the close must not re-open them).
    private readonly Dictionary<string, string> _severities = new(StringComparer.Ordinal);
    private readonly Dictionary<string, DateTime> _closed = new(StringComparer.Ordinal);

    private readonly record struct Item(IncidentTransition Transition, long CommittedAt);

    public AlertmanagerSender(AlertmanagerOptions options, IEnumerable<string> detectors, NpgsqlDataSource dataSource, AlertMetrics metrics,
        ILogger<AlertmanagerSender> logger)
    {
        _options = options;
        _detectors = [.. detectors];
        _dataSource = dataSource;
        _metrics = metrics;
        _logger = logger;
        _http = new HttpClient { BaseAddress = new Uri(options.Url!.TrimEnd('/') + "/"), Timeout = Timeout.InfiniteTimeSpan };
        _queue = Channel.CreateBounded<Item>(new BoundedChannelOptions(options.QueueCapacity) { SingleReader = true, FullMode = BoundedChannelFullMode.Wait });
        metrics.ObserveQueue(() => _queue.Reader.Count);
        var transient = new PredicateBuilder().Handle<HttpRequestException>().Handle<TimeoutRejectedException>()
            .Handle<AlertmanagerException>(e => e.IsTransient);
        var builder = new ResiliencePipelineBuilder();
        if (options.MaxRetries > 0)
        {
            builder.AddRetry(new RetryStrategyOptions
            {
                ShouldHandle = transient,
                MaxRetryAttempts = options.MaxRetries,
                BackoffType = DelayBackoffType.Exponential,
                Delay = TimeSpan.FromMilliseconds(500),
                MaxDelay = TimeSpan.FromSeconds(10),
                UseJitter = true,
                OnRetry = _ =>
                {
                    _metrics.Failures.Add(1);
                    return ValueTask.CompletedTask;
                },
            });
        }
        _pipeline = builder
            .AddCircuitBreaker(new CircuitBreakerStrategyOptions
            {
                ShouldHandle = transient,
                FailureRatio = 1.0,
                MinimumThroughput = 3,
                SamplingDuration = TimeSpan.FromSeconds(30),
                BreakDuration = options.BreakDuration,
                OnOpened = a =>
                {
                    _metrics.SetCircuitOpen(true);
                    _logger.LogWarning("Alertmanager {Url}: circuit open for {Duration} after repeated failures ({Error})", _options.Url, a.BreakDuration,
                        a.Outcome.Exception?.Message);
                    return ValueTask.CompletedTask;
                },
                OnClosed = _ =>
                {
                    _metrics.SetCircuitOpen(false);
                    _logger.LogInformation("Alertmanager {Url}: circuit closed, posting again", _options.Url);
                    return ValueTask.CompletedTask;
                },
            })
            .AddTimeout(options.RequestTimeout)
            .Build();
    }

    /// <summary>Queues committed transitions; never waits: what does not fit is dropped and counted (the next re-send
    /// round delivers open incidents again).</summary>
    public void EnqueueCommitted(IReadOnlyList<IncidentTransition> transitions)
    {
        long now = Stopwatch.GetTimestamp();
        foreach (var t in transitions)
            Offer(new Item(t, now));
    }

    private void Offer(Item item)
    {
        if (!_queue.Writer.TryWrite(item))
            _metrics.Dropped.Add(1, new("detector", item.Transition.Detector), AlertMetrics.Reason("queue_full"));
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var resend = ResendLoopAsync(stoppingToken);
        try
        {
            await SendLoopAsync(stoppingToken);
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
        try
        {
            await resend;
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    private async Task ResendLoopAsync(CancellationToken cancellationToken)
    {
        using var timer = new PeriodicTimer(_options.ResendInterval);
        var previous = DateTime.UtcNow - _options.ResendInterval;
        do
        {
            var round = DateTime.UtcNow;
            try
            {
                // Closed since the previous round (with a margin): their resolution is posted again too.
                var current = await IncidentTransitions.CurrentAsync(_dataSource, _detectors, previous - _options.ResendInterval, cancellationToken);
                // Off the scoring path, so this waits for room instead of dropping: a round larger than the queue goes
                // through at the sender's pace (committed transitions arriving meanwhile may find it full).
                foreach (var t in current)
                    await _queue.Writer.WriteAsync(new Item(t, 0), cancellationToken);
                previous = round;
            }
            catch (Exception e) when (!cancellationToken.IsCancellationRequested)
            {
                // Whatever went wrong, the loop goes on: a fault here must not stop the host (and with it scoring).
                _logger.LogWarning("Alertmanager re-send: cannot read open incidents ({Error}); trying again in {Interval}", e.Message, _options.ResendInterval);
            }
        }
        while (await timer.WaitForNextTickAsync(cancellationToken));
    }

    private async Task SendLoopAsync(CancellationToken cancellationToken)
    {
        var items = new List<Item>(MaxPerPost);
        while (await _queue.Reader.WaitToReadAsync(cancellationToken))
        {
            items.Clear();
            while (items.Count < MaxPerPost && _queue.Reader.TryRead(out var item))
                items.Add(item);
            var now = DateTime.UtcNow;
            Prune(now);
            var body = Build(items, now, out var sent);
            if (sent.Count == 0)
                continue;
            try
            {
                await _pipeline.ExecuteAsync(static async (state, ct) =>
                {
                    using var content = new ByteArrayContent(state.Body);
                    content.Headers.ContentType = new("application/json");
                    using var response = await state.Http.PostAsync("api/v2/alerts", content, ct);
                    if (!response.IsSuccessStatusCode)
                        throw new AlertmanagerException(response.StatusCode, await response.Content.ReadAsStringAsync(ct));
                }, (Body: body, Http: _http), cancellationToken);
            }
            catch (Exception e) when (!cancellationToken.IsCancellationRequested)
            {
                // Retries spent, circuit open, a refused request, or anything unexpected: count, drop, go on.
                if (e is not BrokenCircuitException)
                    _metrics.Failures.Add(1);
                foreach (var item in sent)
                    _metrics.Dropped.Add(1, new("detector", item.Transition.Detector), AlertMetrics.Reason("failed"));
                _logger.LogWarning("Alertmanager {Url}: {Count} alerts not delivered ({Error}); open incidents are posted again within {Interval}",
                    _options.Url, sent.Count, e.Message, _options.ResendInterval);
                continue;
            }
            long done = Stopwatch.GetTimestamp();
            foreach (var item in sent)
            {
                _metrics.Sent.Add(1, new KeyValuePair<string, object?>("detector", item.Transition.Detector));
                if (item.CommittedAt != 0)
                    _metrics.Delivery.Record(Stopwatch.GetElapsedTime(item.CommittedAt, done).TotalSeconds);
            }
        }
    }

    private void Prune(DateTime now)
    {
        if (_closed.Count == 0)
            return;
        var horizon = now - 3 * _options.ResendInterval;
        foreach (var (key, at) in _closed)
        {
            if (at < horizon)
                _closed.Remove(key);
        }
    }

    /// <summary>The JSON body for <paramref name="items"/>; <paramref name="sent"/> gets the items it holds (a stale re-send of an
    /// incident closed meanwhile is left out).</summary>
    private byte[] Build(List<Item> items, DateTime now, out List<Item> sent)
    {
        sent = new List<Item>(items.Count);
        var buffer = new ArrayBufferWriter<byte>(1024);
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartArray();
            foreach (var item in items)
            {
                var t = item.Transition;
                string key = $"{t.Detector}:{t.IncidentKey}";
                string severity = _options.Severity(t.MinPValue);
                if (t.Kind == IncidentTransitionKind.Opened)
                {
                    if (_closed.ContainsKey(key))
                        continue;
                    // The smallest p-value only falls, so severity only rises: resolve the label set posted before.
                    if (_severities.TryGetValue(key, out var before) && before != severity)
                        Write(json, t, before, now, resolved: true);
                    _severities[key] = severity;
                    Write(json, t, severity, now, resolved: false);
                }
                else
                {
                    _closed[key] = now;
                    if (_severities.Remove(key, out var before) && before != severity)
                        Write(json, t, before, now, resolved: true);
                    Write(json, t, severity, now, resolved: true);
                }
                sent.Add(item);
            }
            json.WriteEndArray();
        }
        return buffer.WrittenSpan.ToArray();
    }

    private void Write(Utf8JsonWriter json, IncidentTransition t, string severity, DateTime now, bool resolved)
    {
        // Event times may run ahead of the wall clock (or lag far behind it): Alertmanager wants startsAt <= endsAt, and an
        // endsAt in the future keeps an alert firing until then.
        var startsAt = t.FirstAt < now ? t.FirstAt : now;
        json.WriteStartObject();
        json.WriteStartObject("labels");
        json.WriteString("alertname", AlertName);
        json.WriteString("detector", t.Detector);
        json.WriteString("entity", t.Entity);
        json.WriteString("severity", severity);
        json.WriteString("incident", t.IncidentKey);
        json.WriteEndObject();
        json.WriteStartObject("annotations");
        json.WriteString("summary", string.Create(CultureInfo.InvariantCulture,
            $"{t.Detector}: {t.Entity} anomalous, {t.AnomalyCount} anomalies since {AlertRecord.Time(t.FirstAt)}"));
        json.WriteString("top_features", string.Join(", ", t.TopFeatures.Select(f => string.Create(CultureInfo.InvariantCulture, $"{f.Key} ({f.Value:G4})"))));
        json.WriteString("anomaly_count", t.AnomalyCount.ToString(CultureInfo.InvariantCulture));
        json.WriteString("peak_score", t.PeakScore.ToString("G6", CultureInfo.InvariantCulture));
        json.WriteString("min_p_value", t.MinPValue.ToString("G3", CultureInfo.InvariantCulture));
        json.WriteString("first_at", AlertRecord.Time(t.FirstAt));
        json.WriteString("last_at", AlertRecord.Time(t.LastAt));
        if (Dashboard(t) is { } link)
            json.WriteString("dashboard", link);
        json.WriteEndObject();
        json.WriteString("startsAt", AlertRecord.Time(startsAt));
        if (resolved)
        {
            var endsAt = t.ClosedAt is { } closed && closed < now ? closed : now;
            json.WriteString("endsAt", AlertRecord.Time(endsAt < startsAt ? startsAt : endsAt));
        }
        if (Dashboard(t) is { } generator)
            json.WriteString("generatorURL", generator);
        json.WriteEndObject();
    }

    /// <summary>The dashboard filtered to the incident's detector and entity; null without Alertmanager:DashboardUrl.</summary>
    private string? Dashboard(IncidentTransition t) => string.IsNullOrWhiteSpace(_options.DashboardUrl)
        ? null
        : $"{_options.DashboardUrl.TrimEnd('/')}/?detector={Uri.EscapeDataString(t.Detector)}&entity={Uri.EscapeDataString(t.Entity)}";

    public override void Dispose()
    {
        _http.Dispose();
        base.Dispose();
    }
}
