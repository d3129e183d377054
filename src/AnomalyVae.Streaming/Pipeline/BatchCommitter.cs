using System.Diagnostics;
using AnomalyVae.Events;
using AnomalyVae.Storage;
using Confluent.Kafka;
using Microsoft.Extensions.Logging;
using Npgsql;
using Polly;
using Polly.CircuitBreaker;
using Polly.Retry;

namespace AnomalyVae.Streaming;

/// <summary>
/// Writes a built batch: its dead letters (sent and acknowledged once per batch), then anomaly rows, retraining
/// samples, next offsets and statistics in one PostgreSQL transaction, through a retry and circuit-breaker
/// pipeline. Touches only the batch it is given, so it runs in the background while the next batch is scored.
/// </summary>
public sealed class BatchCommitter
{
    private readonly string _detector;
    private readonly string _deadLetterTopic;
    private readonly AnomalyStore _store;
    private readonly DeadLetterProducer _deadLetters;
    private readonly ServiceMetrics _metrics;
    private readonly ILogger _logger;
    private readonly KeyValuePair<string, object?> _tag;
    private readonly ResiliencePipeline _pipeline;
    private readonly DetectorAlerts? _alerts;

    /// <param name="alerts">The detector's alerts (alerts topic before COMMIT, Alertmanager after it); null: none.</param>
    public BatchCommitter(string detector, string deadLetterTopic, AnomalyStore store, DeadLetterProducer deadLetters, ServiceMetrics metrics,
        ILogger logger, DetectorAlerts? alerts = null)
    {
        _alerts = alerts;
        _detector = detector;
        _deadLetterTopic = deadLetterTopic;
        _store = store;
        _deadLetters = deadLetters;
        _metrics = metrics;
        _logger = logger;
        _tag = new KeyValuePair<string, object?>("detector", detector);
        _pipeline = new ResiliencePipelineBuilder()
            .AddRetry(new RetryStrategyOptions
            {
                ShouldHandle = new PredicateBuilder().Handle<Exception>(IsTransient),
                MaxRetryAttempts = 3,
                BackoffType = DelayBackoffType.Exponential,
                Delay = TimeSpan.FromMilliseconds(200),
                MaxDelay = TimeSpan.FromSeconds(2),
                UseJitter = true,
                OnRetry = a =>
                {
                    _metrics.CommitFailures.Add(1, _tag);
                    _logger.LogWarning("Detector {Detector}: commit attempt {Attempt} failed, retrying in {Delay}: {Error}",
                        _detector, a.AttemptNumber + 1, a.RetryDelay, a.Outcome.Exception?.Message);
                    return ValueTask.CompletedTask;
                },
            })
            .AddCircuitBreaker(new CircuitBreakerStrategyOptions
            {
                ShouldHandle = new PredicateBuilder().Handle<Exception>(IsTransient),
                FailureRatio = 1.0,
                MinimumThroughput = 3,
                SamplingDuration = TimeSpan.FromSeconds(10),
                BreakDuration = TimeSpan.FromSeconds(2),
            })
            .Build();
    }

    /// <summary>The pipeline's retries, for other writes of the same detector (reading stored offsets).</summary>
    public ResiliencePipeline Pipeline => _pipeline;

    /// <summary>Commits <paramref name="batch"/>; <paramref name="cancellationToken"/> cuts a write short only at the
    /// shutdown deadline, so a commit under way when SIGTERM arrives finishes instead of being re-applied later.</summary>
    public async Task CommitAsync(MicroBatch batch, CancellationToken cancellationToken)
    {
        // Npgsql's spans of this transaction become children of this one (Activity.Current flows with the await).
        using var span = batch.StartStage("commit");
        var clock = Stopwatch.GetTimestamp();
        var alerts = _alerts is null ? null : new CommitAlerts(_alerts, batch.Record);
        try
        {
            await _pipeline.ExecuteAsync(static (state, ct) => state.Committer.WriteAsync(state.Batch, state.Alerts, ct), (Committer: this, Batch: batch, Alerts: alerts),
                cancellationToken);
        }
        catch (PostgresException e) when (e.SqlState.StartsWith("22", StringComparison.Ordinal))
        {
            // A payload jsonb refuses despite the checks in EventJson: store every event of the batch as base64.
            _logger.LogWarning("Detector {Detector}: PostgreSQL rejected an event ({Error}); storing the batch's events as base64", _detector, e.MessageText);
            for (int i = 0; i < batch.Record.Events.Count; i++)
            {
                batch.Record.Events[i] = EventJson.ForJsonb(batch.FlaggedPayloads[i], wrap: true);
                batch.Record.Histories[i] = null;
            }
            foreach (var sample in (ReadOnlySpan<SampleRows>)[batch.Record.Training, batch.Record.Recent])
            {
                for (int i = 0; i < sample.Count; i++)
                {
                    sample.Events[i] = EventJson.ForJsonb(sample.Payloads[i], wrap: true);
                    // A window history is rebuilt from decoded steps (numbers, vocabulary names); if one was refused
                    // too, the row is kept without it (windowed retraining skips it).
                    sample.Histories[i] = null;
                }
            }
            await _pipeline.ExecuteAsync(static (state, ct) => state.Committer.WriteAsync(state.Batch, state.Alerts, ct), (Committer: this, Batch: batch, Alerts: alerts),
                cancellationToken);
        }
        _metrics.CommitSeconds.Record(Stopwatch.GetElapsedTime(clock).TotalSeconds, _tag);
        alerts?.Committed();
    }

    private async ValueTask WriteAsync(MicroBatch batch, CommitAlerts? alerts, CancellationToken cancellationToken)
    {
        if (!batch.DeadLettersSent)
        {
            await _deadLetters.SendAsync(_deadLetterTopic, batch.DeadLetters, cancellationToken);
            // Sent once per batch: a database retry must not send them again.
            batch.DeadLettersSent = true;
        }
        await _store.WriteAsync(batch.Record, alerts is null ? null : alerts.BeforeCommitAsync, cancellationToken);
    }

    /// <summary>Failures worth retrying: the database or Kafka away, timeouts. Not: bad SQL, rejected data.</summary>
    public static bool IsTransient(Exception e) => e switch
    {
        // Npgsql's classification (lost connections, timeouts, serialization failures, resource limits), plus the
        // server shutting down under a transaction (57P01, 57P02): the restarted server takes the same batch.
        PostgresException p => p.IsTransient || p.SqlState is PostgresErrorCodes.AdminShutdown or PostgresErrorCodes.CrashShutdown
            // Two consumers of one detector opened an entity's first incident at once: the retry sees the winner's.
            || p is { SqlState: PostgresErrorCodes.UniqueViolation, ConstraintName: "incidents_open_key" },
        NpgsqlException n => n.IsTransient,
        TimeoutException or KafkaException or IOException or System.Net.Sockets.SocketException => true,
        _ => false,
    };

    /// <summary>What a caller waits out and tries again: a transient failure, or the circuit open after several.</summary>
    public static bool IsRetryable(Exception e) => IsTransient(e) || e is BrokenCircuitException;
}
