using System.Diagnostics;
using AnomalyVae.Service.Kafka;
using AnomalyVae.Service.Metrics;
using AnomalyVae.Service.Storage;
using Confluent.Kafka;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace AnomalyVae.Service.Streaming;

/// <summary>
/// One detector's stream, three stages overlapped on three batches: the consumer thread reads batch n+2 from Kafka
/// while <see cref="BatchScorer"/> decodes, scores and decides batch n+1 on a pool thread and
/// <see cref="BatchCommitter"/> commits batch n. Commits stay strictly in order (batch n+1 starts committing only
/// after batch n has), so stored offsets only move forward; where a partition resumes is read from PostgreSQL on
/// assignment. Each batch is bound to one model version when its first event arrives, so a registry swap takes
/// over between batches. While PostgreSQL (or the dead-letter topic) is away, the partitions are paused, the
/// consumer keeps polling (staying in its group) and at most three batches wait in memory.
/// </summary>
public sealed class DetectorWorker : BackgroundService
{
    private static readonly TimeSpan IdlePoll = TimeSpan.FromMilliseconds(100);
    private static readonly TimeSpan StalledPoll = TimeSpan.FromMilliseconds(250);
    private static readonly TimeSpan KafkaCommitInterval = TimeSpan.FromSeconds(1);

    private readonly Detector _detector;
    private readonly KafkaOptions _kafka;
    private readonly ScoringOptions _scoring;
    private readonly OffsetStore _offsets;
    private readonly DeadLetterProducer _deadLetterProducer;
    private readonly ServiceMetrics _metrics;
    private readonly ServiceHealth _health;
    private readonly ILogger _logger;
    private readonly BatchScorer _scorer;
    private readonly BatchCommitter _committer;
    private readonly KeyValuePair<string, object?> _tag;

    // The batch being consumed, the one being scored (if any) and the one committing (if any).
    private readonly MicroBatch[] _batches = new MicroBatch[3];
    private MicroBatch _current;
    private MicroBatch? _building;
    private MicroBatch? _committing;
    private Task? _commit;
    // The version the latest batch was bound to (for the swap log).
    private string? _scoringVersion;

    // Partitions whose start offset came from PostgreSQL; events of any other partition are never processed.
    private readonly HashSet<int> _assigned = [];
    // Next offset committed per owned partition, for the lag gauge.
    private readonly Dictionary<int, long> _committed = [];
    private CancellationToken _stopping;
    // Cancels database and dead-letter writes: only Scoring:ShutdownTimeoutSeconds after stopping began, so a
    // commit under way when SIGTERM arrives finishes instead of being cut (and re-applied) half-way.
    private readonly CancellationTokenSource _writeDeadline = new();
    private long _lastKafkaCommit;
    private long _lastLagUpdate;

    public DetectorWorker(Detector detector, KafkaOptions kafka, ScoringOptions scoring, RetrainingOptions retraining, AnomalyStore store,
        OffsetStore offsets, DeadLetterProducer deadLetterProducer, ServiceMetrics metrics, ServiceHealth health, ILogger<DetectorWorker> logger)
    {
        _detector = detector;
        _kafka = kafka;
        _scoring = scoring;
        _offsets = offsets;
        _deadLetterProducer = deadLetterProducer;
        _metrics = metrics;
        _health = health;
        _logger = logger;
        _tag = new KeyValuePair<string, object?>("detector", detector.Name);
        _scorer = new BatchScorer(detector.Name, detector.Options.Topic, scoring, retraining);
        _committer = new BatchCommitter(detector.Name, detector.Options.ResolvedDeadLetterTopic, store, deadLetterProducer, metrics, logger);
        // Registry-backed models are not loaded yet here (that happens after the migrations): batches bind on first use.
        for (int i = 0; i < _batches.Length; i++)
            _batches[i] = new MicroBatch(detector.Name, detector.Options.Topic, scoring.BatchSize);
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
        _writeDeadline.Dispose();
    }

    private async Task RunAsync(CancellationToken stoppingToken)
    {
        _stopping = stoppingToken;
        using var deadline = stoppingToken.Register(ArmWriteDeadline);
        try
        {
            using var consumer = BuildConsumer();
            consumer.Subscribe(_detector.Options.Topic);
            _health.SetRunning(Name, true);
            _logger.LogInformation("Detector {Detector}: consuming {Topic} as group {Group}", Name, _detector.Options.Topic, GroupId);
            WarnIfMissing(_detector.Options.Topic);
            WarnIfMissing(_detector.Options.ResolvedDeadLetterTopic);
            try
            {
                while (!stoppingToken.IsCancellationRequested)
                {
                    Collect(consumer, stoppingToken);
                    // batch n's commit and batch n+1's scoring ran while this one was read; both must end before
                    // n+1 commits (in order) and this one is scored.
                    await SettleAsync(consumer, stoppingToken);
                    await FinishBuildAsync();
                    StartCommit();
                    StartBuild();
                }
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
            }

            await FinishAsync(consumer);
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
    private async Task FinishAsync(IConsumer<Ignore, byte[]> consumer)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(_scoring.ShutdownTimeoutSeconds));
        try
        {
            bool inMemory = _building is not null || _current.Count > 0;
            await SettleAsync(consumer, timeout.Token);
            await FinishBuildAsync();
            StartCommit();
            await SettleAsync(consumer, timeout.Token);
            if (_current.Count > 0)
            {
                StartBuild();
                await FinishBuildAsync();
                StartCommit();
                await SettleAsync(consumer, timeout.Token);
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
        consumer.Close();
        _logger.LogInformation("Detector {Detector}: left group {Group}", Name, GroupId);
    }

    private string GroupId => _detector.Options.GroupId is { Length: > 0 } group ? group : $"{_kafka.GroupId}.{Name}";

    private IConsumer<Ignore, byte[]> BuildConsumer()
    {
        var config = _kafka.ToConsumerConfig();
        config.GroupId = GroupId;
        // Offsets live in PostgreSQL; Kafka commits are advisory and explicit.
        config.EnableAutoCommit = false;
        config.EnableAutoOffsetStore = false;
        config.AutoOffsetReset = _detector.Options.StartFrom == StartFrom.Latest ? AutoOffsetReset.Latest : AutoOffsetReset.Earliest;
        DetectorConsumerSettings.Apply(config, _kafka);
        return new ConsumerBuilder<Ignore, byte[]>(config)
            .SetLogHandler((_, m) => KafkaLog.Write(_logger, m))
            .SetErrorHandler((_, e) => _logger.LogWarning("Detector {Detector}: Kafka: {Reason} ({Code})", Name, e.Reason, e.Code))
            .SetPartitionsAssignedHandler(OnAssigned)
            .SetPartitionsRevokedHandler(OnRevoked)
            .SetPartitionsLostHandler(OnLost)
            .Build();
    }

    /// <summary>Seeks every assigned partition to its offset stored in PostgreSQL (or the configured start).</summary>
    private IEnumerable<TopicPartitionOffset> OnAssigned(IConsumer<Ignore, byte[]> consumer, List<TopicPartition> partitions)
    {
        var numbers = partitions.Select(p => p.Partition.Value).ToArray();
        IReadOnlyDictionary<int, long>? stored = null;
        while (stored is null)
        {
            try
            {
                stored = _committer.Pipeline.ExecuteAsync(
                    async ct => await _offsets.LoadAsync(Name, _detector.Options.Topic, numbers, ct), _stopping).AsTask().GetAwaiter().GetResult();
                _health.ClearProblem(Name);
            }
            catch (Exception e) when (BatchCommitter.IsRetryable(e))
            {
                _health.SetProblem(Name, $"cannot read stored offsets from PostgreSQL: {e.Message}");
                _logger.LogWarning("Detector {Detector}: cannot read stored offsets ({Error}); retrying", Name, e.Message);
                Thread.Sleep(StalledPoll);
            }
            catch (OperationCanceledException)
            {
                // Shutting down: take the partitions without processing any of them (none is in _assigned).
                return partitions.Select(p => new TopicPartitionOffset(p, Offset.Unset));
            }
        }
        var start = _detector.Options.StartFrom == StartFrom.Latest ? Offset.End : Offset.Beginning;
        var result = new List<TopicPartitionOffset>(partitions.Count);
        foreach (var partition in partitions)
        {
            var offset = stored.TryGetValue(partition.Partition.Value, out var next) ? new Offset(next) : start;
            if (offset.Value >= 0)
                _committed[partition.Partition.Value] = offset.Value;
            result.Add(new TopicPartitionOffset(partition, offset));
            _assigned.Add(partition.Partition.Value);
        }
        _health.SetAssignment(Name, _assigned);
        _logger.LogInformation("Detector {Detector}: assigned {Partitions}", Name, string.Join(", ", result.Select(r => $"{r.Partition.Value}@{r.Offset}")));
        return result;
    }

    /// <summary>Before losing partitions, commit what was read from them (the batches in memory, in order); if that
    /// fails, drop them: nothing of them is committed, so the next owner reads them again.</summary>
    private void OnRevoked(IConsumer<Ignore, byte[]> consumer, List<TopicPartitionOffset> partitions)
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
                Committed(consumer, _committing!);
            }
            foreach (var batch in (ReadOnlySpan<MicroBatch?>)[_building, _current])
            {
                if (batch is null || batch.Count == 0)
                    continue;
                batch.Building?.GetAwaiter().GetResult();
                _scorer.Build(batch);
                RecordStages(batch);
                _committer.CommitAsync(batch, _writeDeadline.Token).GetAwaiter().GetResult();
                Committed(consumer, batch);
            }
            _building = null;
        }
        catch (Exception e) when (BatchCommitter.IsRetryable(e) || e is OperationCanceledException)
        {
            _logger.LogWarning("Detector {Detector}: partitions revoked with uncommitted events ({Error}); the next owner re-reads them", Name, e.Message);
            DropAll();
        }
        Forget(partitions.Select(p => p.Partition.Value));
    }

    /// <summary>Partitions lost (session timed out): another consumer may own them already, so drop what is not
    /// committed (a commit under way may still land: offsets only move forward and its rows are idempotent).</summary>
    private void OnLost(IConsumer<Ignore, byte[]> consumer, List<TopicPartitionOffset> partitions)
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
        Forget(partitions.Select(p => p.Partition.Value));
    }

    private void Forget(IEnumerable<int> partitions)
    {
        foreach (var partition in partitions)
        {
            _assigned.Remove(partition);
            _committed.Remove(partition);
            _metrics.ClearLag(Name, partition);
        }
        _health.SetAssignment(Name, _assigned);
    }

    /// <summary>Reads events into the current batch until it is full, or Scoring:BatchTimeoutMs after its first event.</summary>
    private void Collect(IConsumer<Ignore, byte[]> consumer, CancellationToken stoppingToken)
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
                Committed(consumer, _committing!);
            }
            // The batch scored meanwhile commits now, not after this one is read (latency under a long timeout).
            if (_commit is null && _building?.Building is { IsCompleted: true } built)
            {
                if (!built.IsCompletedSuccessfully)
                    break; // the main loop rethrows it
                RecordStages(_building);
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
            ConsumeResult<Ignore, byte[]>? result;
            try
            {
                result = consumer.Consume(wait);
            }
            catch (ConsumeException e)
            {
                _logger.LogWarning("Detector {Detector}: consume error: {Reason}", Name, e.Error.Reason);
                continue;
            }
            if (!ReferenceEquals(batch, _current))
                return; // a rebalance in Consume committed or dropped the batch: start over with the current one
            if (result?.Message is null)
            {
                // Idle: keep the lag gauge current (the broker's high watermark moves without us).
                if (Stopwatch.GetElapsedTime(_lastLagUpdate) > TimeSpan.FromSeconds(1))
                    UpdateLag(consumer);
                continue;
            }
            if (!_assigned.Contains(result.Partition.Value))
                continue;
            if (batch.Count == 0)
            {
                deadline = Stopwatch.GetTimestamp() + (long)(_scoring.BatchTimeoutMs * (Stopwatch.Frequency / 1000.0));
                Bind(batch);
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
        batch.Building = Task.Run(() => _scorer.Build(batch));
        _building = batch;
        _current = _batches.First(b => !ReferenceEquals(b, _building) && !ReferenceEquals(b, _committing));
    }

    /// <summary>Waits for the batch being scored; a failure there (a bug: decoding never throws) stops the detector.</summary>
    private async Task FinishBuildAsync()
    {
        if (_building?.Building is { } building)
        {
            await building;
            RecordStages(_building);
        }
    }

    private void RecordStages(MicroBatch batch)
    {
        _metrics.StageCpuSeconds.Add(batch.DecodeSeconds, _tag, ServiceMetrics.Stage("decode"));
        _metrics.StageCpuSeconds.Add(batch.ScoreSeconds, _tag, ServiceMetrics.Stage("score"));
        _metrics.StageCpuSeconds.Add(batch.DecideSeconds, _tag, ServiceMetrics.Stage("decide"));
        _metrics.ScoringSeconds.Record(batch.DecodeSeconds + batch.ScoreSeconds + batch.DecideSeconds, _tag);
    }

    /// <summary>Starts committing the scored batch in the background (the previous commit has settled).</summary>
    private void StartCommit()
    {
        if (_building is null)
            return;
        _committing = _building;
        _building = null;
        _commit = _committer.CommitAsync(_committing, _writeDeadline.Token);
    }

    /// <summary>Waits for the background commit; while the database or the dead-letter topic is away, pauses the
    /// partitions and retries until it succeeds (or the batches are dropped in a rebalance).</summary>
    private async Task SettleAsync(IConsumer<Ignore, byte[]> consumer, CancellationToken cancellationToken)
    {
        if (_commit is null)
            return;
        var batch = _committing!;
        bool paused = false;
        List<TopicPartition> pausedPartitions = [];
        try
        {
            while (_commit is not null)
            {
                try
                {
                    await _commit;
                    Committed(consumer, batch);
                    break;
                }
                catch (Exception e) when (BatchCommitter.IsRetryable(e))
                {
                    if (!paused)
                    {
                        pausedPartitions = consumer.Assignment;
                        consumer.Pause(pausedPartitions);
                        paused = true;
                        _logger.LogWarning("Detector {Detector}: cannot commit ({Error}); partitions paused, {Count} events kept until it can",
                            Name, e.Message, batch.Count + (_building?.Count ?? 0) + _current.Count);
                    }
                    _health.SetProblem(Name, $"cannot commit to PostgreSQL or the dead-letter topic: {e.Message}");
                    cancellationToken.ThrowIfCancellationRequested();
                    PollWhilePaused(consumer);
                    // A revocation in there commits or drops the batches itself.
                    if (_commit is not null)
                        _commit = _committer.CommitAsync(batch, _writeDeadline.Token);
                }
            }
        }
        finally
        {
            if (paused)
            {
                var still = consumer.Assignment;
                consumer.Resume(pausedPartitions.Where(still.Contains));
                _health.ClearProblem(Name);
                _logger.LogInformation("Detector {Detector}: commits work again; partitions resumed", Name);
            }
        }
    }

    /// <summary>Keeps the consumer in its group while paused. Rebalance callbacks run in here; a message that still
    /// arrives is given back by seeking to it, so it is read again after resuming.</summary>
    private void PollWhilePaused(IConsumer<Ignore, byte[]> consumer)
    {
        try
        {
            var result = consumer.Consume(StalledPoll);
            if (result?.Message is not null)
                consumer.Seek(result.TopicPartitionOffset);
        }
        catch (ConsumeException e)
        {
            _logger.LogDebug("Detector {Detector}: consume error while paused: {Reason}", Name, e.Error.Reason);
        }
    }

    /// <summary>After a batch's commit: metrics, lag, advisory Kafka commit; the batch is emptied for reuse.</summary>
    private void Committed(IConsumer<Ignore, byte[]> consumer, MicroBatch batch)
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
        foreach (var (partition, next) in batch.NextOffsets)
            _committed[partition] = next;
        UpdateLag(consumer);
        CommitToKafka(consumer, batch);
        batch.Clear();
        if (ReferenceEquals(batch, _committing))
        {
            _commit = null;
            _committing = null;
        }
    }

    private void CommitToKafka(IConsumer<Ignore, byte[]> consumer, MicroBatch batch)
    {
        // Advisory only (PostgreSQL has the truth): at most once a second, and failures are harmless.
        if (Stopwatch.GetElapsedTime(_lastKafkaCommit) < KafkaCommitInterval && !_stopping.IsCancellationRequested)
            return;
        _lastKafkaCommit = Stopwatch.GetTimestamp();
        try
        {
            consumer.Commit(batch.NextOffsets.Select(p => new TopicPartitionOffset(_detector.Options.Topic, p.Key, p.Value)));
        }
        catch (KafkaException e)
        {
            _logger.LogDebug("Detector {Detector}: advisory Kafka commit failed: {Reason}", Name, e.Error.Reason);
        }
    }

    private void UpdateLag(IConsumer<Ignore, byte[]> consumer)
    {
        _lastLagUpdate = Stopwatch.GetTimestamp();
        foreach (var (partition, next) in _committed)
        {
            var watermarks = consumer.GetWatermarkOffsets(new TopicPartition(_detector.Options.Topic, partition));
            if (watermarks.High != Offset.Unset)
                _metrics.SetLag(Name, partition, watermarks.High.Value - next);
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
    }
}
