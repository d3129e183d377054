using System.Diagnostics;
using AnomalyVae.Retraining;
using AnomalyVae.Storage;
using Confluent.Kafka;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace AnomalyVae.Streaming;

/// <summary>
/// One detector's stream: consume, score and commit overlap on three batches, and commits stay strictly in order so
/// stored offsets only move forward. Each batch is bound to one model version when its first event arrives. While
/// PostgreSQL or the dead-letter topic is away the partitions are paused and at most three batches wait in memory.
/// See docs/streaming.md.
/// </summary>
public sealed class DetectorWorker : BackgroundService
{
    private static readonly TimeSpan IdlePoll = TimeSpan.FromMilliseconds(100);

    private readonly Detector _detector;
    private readonly ScoringOptions _scoring;
    private readonly DeadLetterProducer _deadLetterProducer;
    private readonly ServiceMetrics _metrics;
    private readonly ServiceHealth _health;
    private readonly ILogger _logger;
    private readonly BatchScorer _scorer;
    private readonly BatchCommitter _committer;
    private readonly DetectorConsumer _consumer;
    // Per-entity history for windowed models (unused while the model has no window).
    private readonly EntityWindows _windows;
    private readonly KeyValuePair<string, object?> _tag;

    // The batch being consumed, the one being scored (if any) and the one committing (if any).
    private readonly MicroBatch[] _batches = new MicroBatch[3];
    private MicroBatch _current;
    private MicroBatch? _building;
    private MicroBatch? _committing;
    private Task? _commit;
    // The version the latest batch was bound to (for the swap log).
    private string? _scoringVersion;

    // Cancels database and dead-letter writes: only Scoring:ShutdownTimeoutSeconds after stopping began, so a
    // commit under way when SIGTERM arrives finishes instead of being cut (and re-applied) half-way.
    private readonly CancellationTokenSource _writeDeadline = new();

    public DetectorWorker(Detector detector, KafkaOptions kafka, ScoringOptions scoring, RetrainingOptions retraining, AnomalyStore store,
        OffsetStore offsets, WindowStateStore windowStates, DeadLetterProducer deadLetterProducer, ServiceMetrics metrics, ServiceHealth health,
        ILogger<DetectorWorker> logger, DetectorAlerts? alerts = null)
    {
        _detector = detector;
        _scoring = scoring;
        _deadLetterProducer = deadLetterProducer;
        _metrics = metrics;
        _health = health;
        _logger = logger;
        _tag = new KeyValuePair<string, object?>("detector", detector.Name);
        _committer = new BatchCommitter(detector.Name, detector.Options.ResolvedDeadLetterTopic, store, deadLetterProducer, metrics, logger, alerts);
        _windows = new EntityWindows(detector.Name, detector.Options.Topic, scoring.MaxWindowEntities, windowStates, _committer.Pipeline, logger)
        {
            Stopping = _writeDeadline.Token,
        };
        _scorer = new BatchScorer(detector.Name, detector.Options.Topic, scoring, retraining, _windows);
        _consumer = new DetectorConsumer(detector, kafka, offsets, _committer.Pipeline, metrics, health, logger, OnRevoked, OnLost, _windows.Assigned);
        // Registry-backed models are not loaded yet here (that happens after the migrations): batches bind on first use.
        for (int i = 0; i < _batches.Length; i++)
        {
            _batches[i] = new MicroBatch(detector.Name, detector.Options.Topic, scoring.BatchSize);
            _batches[i].Record.IncidentGap = detector.Options.IncidentGapInEffect;
        }
        _current = _batches[0];
    }

    public string Name => _detector.Name;

    protected override Task ExecuteAsync(CancellationToken stoppingToken) =>
        // Consume blocks; keep it off the host's start-up path.
        Task.Run(() => RunAsync(stoppingToken), CancellationToken.None);

    public override void Dispose()
    {
        // The base cancels the stopping token, whose callback arms _writeDeadline: dispose that one after.
        base.Dispose();
        foreach (var batch in _batches)
            batch.Dispose();
        _consumer.Dispose();
        _writeDeadline.Dispose();
    }

    private async Task RunAsync(CancellationToken stoppingToken)
    {
        using var deadline = stoppingToken.Register(ArmWriteDeadline);
        try
        {
            _consumer.Start(stoppingToken);
            _health.SetRunning(Name, true);
            WarnIfMissing(_detector.Options.Topic);
            WarnIfMissing(_detector.Options.ResolvedDeadLetterTopic);
            // Alert records must be acknowledged before a batch commits: a missing alerts topic stalls the detector too.
            if (_detector.Options.Alerts.Topic is { Length: > 0 } alertsTopic)
                WarnIfMissing(alertsTopic);
            try
            {
                while (!stoppingToken.IsCancellationRequested)
                {
                    Collect(stoppingToken);
                    // batch n's commit and batch n+1's scoring ran while this one was read; both must end before
                    // n+1 commits (in order) and this one is scored.
                    await SettleAsync(stoppingToken);
                    await FinishBuildAsync();
                    StartCommit();
                    StartBuild();
                }
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
            }

            await FinishAsync();
        }
        catch (Exception e)
        {
            _health.SetFaulted(Name, e.Message);
            _logger.LogCritical(e, "Detector {Detector} stopped: {Error}", Name, e.Message);
            throw;
        }
        finally
        {
            // A build may still run on a pool thread: let it end before the batches are disposed.
            WaitForBuild();
            _health.SetRunning(Name, false);
        }
    }

    /// <summary>A missing dead-letter topic stalls the detector at its first bad event (where auto-creation is
    /// off): say so at start-up rather than only then.</summary>
    private void WarnIfMissing(string topic)
    {
        try
        {
            using var admin = new DependentAdminClientBuilder(_deadLetterProducer.Handle).Build();
            var metadata = admin.GetMetadata(topic, TimeSpan.FromSeconds(5));
            var error = metadata.Topics.FirstOrDefault()?.Error;
            if (error is { IsError: true })
                _logger.LogWarning("Detector {Detector}: topic {Topic} is not available: {Reason}", Name, topic, error.Reason);
        }
        catch (KafkaException e)
        {
            _logger.LogWarning("Detector {Detector}: cannot check topic {Topic}: {Reason}", Name, topic, e.Error.Reason);
        }
    }

    private void ArmWriteDeadline()
    {
        try
        {
            _writeDeadline.CancelAfter(TimeSpan.FromSeconds(_scoring.ShutdownTimeoutSeconds));
        }
        catch (ObjectDisposedException)
        {
            // Disposed while stopping: nothing left to cut short.
        }
    }

    /// <summary>Graceful shutdown: commit the batches in memory in order (bounded by Scoring:ShutdownTimeoutSeconds),
    /// leave the group.</summary>
    private async Task FinishAsync()
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(_scoring.ShutdownTimeoutSeconds));
        try
        {
            bool inMemory = _building is not null || _current.Count > 0;
            await SettleAsync(timeout.Token);
            await FinishBuildAsync();
            StartCommit();
            await SettleAsync(timeout.Token);
            if (_current.Count > 0)
            {
                StartBuild();
                await FinishBuildAsync();
                StartCommit();
                await SettleAsync(timeout.Token);
            }
            if (inMemory)
                _logger.LogInformation("Detector {Detector}: committed the in-flight batch on shutdown", Name);
        }
        catch (OperationCanceledException)
        {
            // Nothing of these batches is committed, so their events are read again after restart: no loss.
            _logger.LogWarning("Detector {Detector}: could not commit the batches in memory before the shutdown timeout; they will be re-read", Name);
            DropAll();
        }
        _consumer.Close();
    }

    /// <summary>Before losing partitions, commit what was read from them (the batches in memory, in order); if that
    /// fails, drop them: nothing of them is committed, so the next owner reads them again.</summary>
    private void OnRevoked(List<TopicPartitionOffset> partitions)
    {
        try
        {
            if (_commit is not null)
            {
                try
                {
                    _commit.GetAwaiter().GetResult();
                }
                catch (Exception e) when (BatchCommitter.IsRetryable(e))
                {
                    // One more try through the pipeline before giving the partitions up.
                    _committer.CommitAsync(_committing!, _writeDeadline.Token).GetAwaiter().GetResult();
                }
                Committed(_committing!);
            }
            foreach (var batch in (ReadOnlySpan<MicroBatch?>)[_building, _current])
            {
                if (batch is null || batch.Count == 0)
                    continue;
                batch.Building?.GetAwaiter().GetResult();
                _scorer.Build(batch);
                RecordStages(batch);
                _committer.CommitAsync(batch, _writeDeadline.Token).GetAwaiter().GetResult();
                Committed(batch);
            }
            _building = null;
        }
        catch (Exception e) when (BatchCommitter.IsRetryable(e) || e is OperationCanceledException)
        {
            _logger.LogWarning("Detector {Detector}: partitions revoked with uncommitted events ({Error}); the next owner re-reads them", Name, e.Message);
            DropAll();
        }
        // Whoever owns them next advances their state; if they come back here it is read again.
        _windows.Forget(partitions.Select(p => p.Partition.Value));
    }

    /// <summary>Partitions lost (session timed out): another consumer may own them already, so drop what is not
    /// committed (a commit under way may still land: offsets only move forward and its rows are idempotent).</summary>
    private void OnLost(List<TopicPartitionOffset> partitions)
    {
        if (_current.Count > 0 || _building is not null || _commit is not null)
            _logger.LogWarning("Detector {Detector}: partitions lost with uncommitted events; the next owner re-reads them", Name);
        try
        {
            _commit?.GetAwaiter().GetResult();
        }
        catch (Exception e) when (BatchCommitter.IsRetryable(e) || e is OperationCanceledException)
        {
            _logger.LogDebug("Detector {Detector}: commit of a lost batch failed: {Error}", Name, e.Message);
        }
        DropAll();
        _windows.Forget(partitions.Select(p => p.Partition.Value));
    }

    /// <summary>Reads events into the current batch until it is full, or Scoring:BatchTimeoutMs after its first event.</summary>
    private void Collect(CancellationToken stoppingToken)
    {
        long cpu = ThreadCpu.Now();
        long deadline = 0;
        var batch = _current;
        while (batch.Count < batch.Capacity && !stoppingToken.IsCancellationRequested)
        {
            if (_commit is { IsCompleted: true })
            {
                // A failed commit is the main loop's to retry (pausing); a finished one is acknowledged right away,
                // so metrics, lag and the advisory Kafka commit do not wait for the next batch.
                if (!_commit.IsCompletedSuccessfully)
                    break;
                Committed(_committing!);
            }
            // The batch scored meanwhile commits now, not after this one is read (latency under a long timeout).
            if (_commit is null && _building?.Building is { IsCompleted: true } built)
            {
                if (!built.IsCompletedSuccessfully)
                    break; // the main loop rethrows it
                StartCommit();
            }
            var wait = IdlePoll;
            if (batch.Count > 0)
            {
                long left = deadline - Stopwatch.GetTimestamp();
                if (left <= 0)
                    break;
                // Consume does not see the stopping token: wait in short steps, so a shutdown during a long
                // Scoring:BatchTimeoutMs commits this batch now instead of after the host's shutdown timeout.
                wait = TimeSpan.FromTicks(Math.Min(Stopwatch.GetElapsedTime(0, left).Ticks, IdlePoll.Ticks));
            }
            var result = _consumer.Consume(wait);
            if (!ReferenceEquals(batch, _current))
                break; // a rebalance in Consume committed or dropped the batch: start over with the current one
            if (result is null)
                continue;
            if (batch.Count == 0)
            {
                deadline = Stopwatch.GetTimestamp() + (long)(_scoring.BatchTimeoutMs * (Stopwatch.Frequency / 1000.0));
                Bind(batch);
                batch.StartTrace(Name);
            }
            var now = DateTime.UtcNow;
            var timestamp = result.Message.Timestamp;
            batch.Add(result.Partition.Value, result.Offset.Value, result.Message.Value ?? [],
                timestamp.Type == TimestampType.NotAvailable ? now : timestamp.UtcDateTime, now);
        }
        _metrics.StageCpuSeconds.Add(ThreadCpu.Seconds(ThreadCpu.Now() - cpu), _tag, ServiceMetrics.Stage("consume"));
    }

    /// <summary>Binds an empty batch to the detector's current model version (a new one only after a swap).</summary>
    private void Bind(MicroBatch batch)
    {
        var model = _detector.Current;
        if (batch.IsBound && ReferenceEquals(model, batch.Model))
            return;
        model = _detector.AcquireCurrent() ?? throw new InvalidOperationException($"Detector '{Name}' has no model loaded.");
        batch.Bind(model);
        if (model.Version != _scoringVersion)
        {
            if (_scoringVersion is not null)
                _logger.LogInformation("Detector {Detector}: model version {Previous} -> {Version}: batches from here on are scored by it (threshold {Threshold})",
                    Name, _scoringVersion, model.Version, model.Threshold);
            _scoringVersion = model.Version;
        }
    }

    /// <summary>Hands the current batch to a pool thread for decode/score/decide and takes a free batch to consume into.</summary>
    private void StartBuild()
    {
        if (_current.Count == 0)
            return;
        var batch = _current;
        batch.EndConsume();
        batch.Building = Task.Run(() => _scorer.Build(batch));
        _building = batch;
        _current = _batches.First(b => !ReferenceEquals(b, _building) && !ReferenceEquals(b, _committing));
    }

    /// <summary>Waits for the batch being scored; a failure there (a bug: decoding never throws) stops the detector.</summary>
    private async Task FinishBuildAsync()
    {
        if (_building?.Building is { } building)
            await building;
    }

    private void RecordStages(MicroBatch batch)
    {
        _metrics.StageCpuSeconds.Add(batch.DecodeSeconds, _tag, ServiceMetrics.Stage("decode"));
        _metrics.StageCpuSeconds.Add(batch.ScoreSeconds, _tag, ServiceMetrics.Stage("score"));
        _metrics.StageCpuSeconds.Add(batch.DecideSeconds, _tag, ServiceMetrics.Stage("decide"));
        _metrics.ScoringSeconds.Record(batch.DecodeSeconds + batch.ScoreSeconds + batch.DecideSeconds, _tag);
    }

    /// <summary>Starts committing the scored batch in the background (its build and the previous commit have ended).</summary>
    private void StartCommit()
    {
        if (_building is null)
            return;
        RecordStages(_building);
        _committing = _building;
        _building = null;
        _commit = _committer.CommitAsync(_committing, _writeDeadline.Token);
    }

    /// <summary>Waits for the background commit; while the database or the dead-letter topic is away, pauses the
    /// partitions and retries until it succeeds (or the batches are dropped in a rebalance).</summary>
    private async Task SettleAsync(CancellationToken cancellationToken)
    {
        if (_commit is null)
            return;
        var batch = _committing!;
        try
        {
            while (_commit is not null)
            {
                try
                {
                    await _commit;
                    Committed(batch);
                    break;
                }
                catch (Exception e) when (BatchCommitter.IsRetryable(e))
                {
                    if (!_consumer.IsPaused)
                    {
                        _consumer.Pause();
                        _logger.LogWarning("Detector {Detector}: cannot commit ({Error}); partitions paused, {Count} events kept until it can",
                            Name, e.Message, batch.Count + (_building?.Count ?? 0) + _current.Count);
                    }
                    _health.SetProblem(Name, $"cannot commit to PostgreSQL or the dead-letter topic: {e.Message}");
                    cancellationToken.ThrowIfCancellationRequested();
                    _consumer.PollWhilePaused();
                    // A revocation in there commits or drops the batches itself.
                    if (_commit is not null)
                        _commit = _committer.CommitAsync(batch, _writeDeadline.Token);
                }
            }
        }
        finally
        {
            if (_consumer.IsPaused)
            {
                _consumer.Resume();
                _health.ClearProblem(Name);
                _logger.LogInformation("Detector {Detector}: commits work again; partitions resumed", Name);
            }
        }
    }

    /// <summary>After a batch's commit: metrics, lag, advisory Kafka commit; the batch is emptied for reuse.</summary>
    private void Committed(MicroBatch batch)
    {
        var committedAt = DateTime.UtcNow;
        _metrics.Consumed.Add(batch.Count, _tag);
        _metrics.Scored.Add(batch.Rows, _tag);
        _metrics.Flagged.Add(batch.Record.Scores.Count, _tag);
        // Counted on commit like the others, so a batch dropped in a rebalance and read again counts once.
        foreach (var letter in batch.DeadLetters)
            _metrics.DeadLettered.Add(1, _tag, new KeyValuePair<string, object?>("reason", letter.Reason));
        _metrics.BatchSize.Record(batch.Count, _tag);
        for (int i = 0; i < batch.Count; i++)
            _metrics.EventToRowSeconds.Record((committedAt - batch.Events[i].Time).TotalSeconds, _tag);
        _consumer.Committed(batch.NextOffsets);
        if (batch.WindowSequence > 0)
            _windows.Committed(batch.WindowSequence);
        batch.Clear();
        if (ReferenceEquals(batch, _committing))
        {
            _commit = null;
            _committing = null;
        }
    }

    private void WaitForBuild()
    {
        try
        {
            _building?.Building?.GetAwaiter().GetResult();
        }
        catch (Exception e)
        {
            _logger.LogDebug("Detector {Detector}: scoring of a dropped batch failed: {Error}", Name, e.Message);
        }
    }

    /// <summary>Forgets every event not committed (they are read again from the stored offsets).</summary>
    private void DropAll()
    {
        WaitForBuild();
        _commit = null;
        _committing = null;
        _building = null;
        foreach (var batch in _batches)
            batch.Clear();
        _current = _batches[0];
        // The window state in memory includes the dropped batches: read it again from PostgreSQL.
        _windows.Reset();
    }
}
