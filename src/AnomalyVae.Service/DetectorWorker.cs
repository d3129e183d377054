using System.Buffers;
using System.Diagnostics;
using System.Text;
using System.Text.Json;
using AnomalyVae.Features;
using AnomalyVae.Scoring;
using AnomalyVae.Service.Kafka;
using AnomalyVae.Service.Metrics;
using AnomalyVae.Service.Storage;
using Confluent.Kafka;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Npgsql;
using Polly;
using Polly.CircuitBreaker;
using Polly.Retry;

namespace AnomalyVae.Service;

/// <summary>
/// One detector's stream: consume a micro-batch (up to Scoring:BatchSize events or Scoring:BatchTimeoutMs after
/// its first event) → decode each event straight into the scorer's input rows (bad ones become dead letters) →
/// one ONNX Runtime run → flag scores above the threshold → send the dead letters and wait for their acks →
/// commit anomaly rows, retraining samples, next offsets and statistics in one PostgreSQL transaction → advisory
/// Kafka commit.
/// Two batches alternate: while one commits, the next is consumed and scored; commits stay strictly in order
/// (batch n+1 starts committing only after batch n has), so offsets only ever move forward.
/// Where a partition resumes is read from PostgreSQL on assignment, so Kafka's own offsets never matter.
/// Each batch is bound to one model version when its first event arrives (the detector's current one), so a new
/// registry version takes over between batches: every batch is scored, and its rows and statistics labelled, by
/// exactly one version; a version's session is released when the last batch bound to it is rebound.
/// While PostgreSQL (or the dead-letter topic) is unavailable the batches stay in memory (at most two), the
/// partitions are paused and the consumer keeps polling (so it stays in its group) until a retry succeeds.
/// </summary>
public sealed class DetectorWorker : BackgroundService
{
    private static readonly TimeSpan IdlePoll = TimeSpan.FromMilliseconds(100);
    private static readonly TimeSpan StalledPoll = TimeSpan.FromMilliseconds(250);
    private static readonly TimeSpan KafkaCommitInterval = TimeSpan.FromSeconds(1);

    private readonly Detector _detector;
    private readonly KafkaOptions _kafka;
    private readonly ScoringOptions _scoring;
    private readonly RetrainingOptions _retraining;
    private readonly AnomalyStore _store;
    private readonly OffsetStore _offsets;
    private readonly DeadLetterProducer _deadLetterProducer;
    private readonly ServiceMetrics _metrics;
    private readonly ServiceHealth _health;
    private readonly ILogger _logger;
    private readonly ResiliencePipeline _pipeline;
    private readonly KeyValuePair<string, object?> _tag;

    // The batch being consumed, and the one committing in the background (if any).
    private readonly Batch[] _batches = new Batch[2];
    private Batch _current;
    private Batch? _committing;
    private Task? _commit;
    private ScoreWindow _window;
    // The version the window's statistics belong to, and the version the latest batch was bound to (for the swap log).
    private string? _windowVersion;
    private string? _scoringVersion;

    // Partitions whose start offset came from PostgreSQL; events of any other partition are never processed.
    private readonly HashSet<int> _assigned = [];
    // Next offset committed per owned partition, for the lag gauge.
    private readonly Dictionary<int, long> _committed = [];
    // Contribution ordering scratch, sized to the model's feature count (resized only when a swap changes it).
    private int[] _order = [];
    private float[] _keys = [];
    private readonly ArrayBufferWriter<byte> _json = new(4096);
    // Retraining-sample admissions and reservoir draws; drawn when a batch is built, so a retried commit writes
    // the same rows. Seeded from the detector's name: reproducible, and independent of the scores.
    private readonly Random _sampling;
    // Score-bin edges of the calibration they were computed from (recomputed only when the model changes).
    private double[] _binEdges = [];
    private Calibration? _binEdgesOf;
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
        _retraining = retraining;
        _sampling = new Random(StableSeed(detector.Name));
        _store = store;
        _offsets = offsets;
        _deadLetterProducer = deadLetterProducer;
        _metrics = metrics;
        _health = health;
        _logger = logger;
        _tag = new KeyValuePair<string, object?>("detector", detector.Name);
        // Registry-backed models are not loaded yet here (that happens after the migrations): batches bind on first use.
        for (int i = 0; i < _batches.Length; i++)
            _batches[i] = new Batch(detector.Name, detector.Options.Topic, scoring.BatchSize);
        _current = _batches[0];
        _window = new ScoreWindow(scoring.StatsWindowSeconds);
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
                        _detector.Name, a.AttemptNumber + 1, a.RetryDelay, a.Outcome.Exception?.Message);
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
                    // Scoring overlaps the previous batch's commit; then wait for that commit before starting this one.
                    if (_current.Count > 0)
                        Build(_current);
                    await SettleAsync(consumer, stoppingToken);
                    StartCommit();
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

    /// <summary>Graceful shutdown: commit the batches in memory (bounded by Scoring:ShutdownTimeoutSeconds), leave the group.</summary>
    private async Task FinishAsync(IConsumer<Ignore, byte[]> consumer)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(_scoring.ShutdownTimeoutSeconds));
        try
        {
            await SettleAsync(consumer, timeout.Token);
            if (_current.Count > 0)
            {
                Build(_current);
                StartCommit();
                await SettleAsync(consumer, timeout.Token);
                _logger.LogInformation("Detector {Detector}: committed the in-flight batch on shutdown", Name);
            }
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
        config.EnablePartitionEof = false;
        // Per message the client would otherwise marshal the topic name and the headers (allocations, P/Invokes).
        config.ConsumeResultFields = "timestamp";
        config.AutoOffsetReset = _detector.Options.StartFrom == StartFrom.Latest ? AutoOffsetReset.Latest : AutoOffsetReset.Earliest;
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
                stored = _pipeline.ExecuteAsync(
                    async ct => await _offsets.LoadAsync(Name, _detector.Options.Topic, numbers, ct), _stopping).AsTask().GetAwaiter().GetResult();
                _health.ClearProblem(Name);
            }
            catch (Exception e) when (IsTransient(e) || e is BrokenCircuitException)
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

    /// <summary>Before losing partitions, commit what was read from them (the batches in memory); if that fails,
    /// drop them: nothing of them is committed, so the next owner reads them again.</summary>
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
                catch (Exception e) when (IsTransient(e) || e is BrokenCircuitException)
                {
                    // One more try through the pipeline before giving the partitions up.
                    CommitAsync(_committing!).GetAwaiter().GetResult();
                }
                Committed(consumer, _committing!);
            }
            if (_current.Count > 0)
            {
                Build(_current);
                CommitAsync(_current).GetAwaiter().GetResult();
                Committed(consumer, _current);
            }
        }
        catch (Exception e) when (IsTransient(e) || e is BrokenCircuitException or OperationCanceledException)
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
        if (_current.Count > 0 || _commit is not null)
            _logger.LogWarning("Detector {Detector}: partitions lost with uncommitted events; the next owner re-reads them", Name);
        try
        {
            _commit?.GetAwaiter().GetResult();
        }
        catch (Exception e) when (IsTransient(e) || e is BrokenCircuitException or OperationCanceledException)
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
        long deadline = 0;
        while (_current.Count < _current.Capacity && !stoppingToken.IsCancellationRequested)
        {
            if (_commit is { IsCompleted: true })
            {
                // A failed commit is the main loop's to retry (pausing); a finished one is acknowledged right away,
                // so metrics, lag and the advisory Kafka commit do not wait for the next batch.
                if (!_commit.IsCompletedSuccessfully)
                    return;
                Committed(consumer, _committing!);
            }
            var wait = IdlePoll;
            if (_current.Count > 0)
            {
                long left = deadline - Stopwatch.GetTimestamp();
                if (left <= 0)
                    return;
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
            if (result?.Message is null)
            {
                // Idle: keep the lag gauge current (the broker's high watermark moves without us).
                if (Stopwatch.GetElapsedTime(_lastLagUpdate) > TimeSpan.FromSeconds(1))
                    UpdateLag(consumer);
                continue;
            }
            if (!_assigned.Contains(result.Partition.Value))
                continue;
            if (_current.Count == 0)
            {
                deadline = Stopwatch.GetTimestamp() + (long)(_scoring.BatchTimeoutMs * (Stopwatch.Frequency / 1000.0));
                Bind(_current);
            }
            Add(_current, result);
        }
    }

    /// <summary>Binds an empty batch to the detector's current model version (a new one only after a swap).</summary>
    private void Bind(Batch batch)
    {
        var model = _detector.Current;
        if (ReferenceEquals(model, batch.Model))
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

    /// <summary>Decodes one event into the batch's next input row, or turns it into a dead letter.</summary>
    private void Add(Batch batch, ConsumeResult<Ignore, byte[]> result)
    {
        var payload = result.Message.Value ?? [];
        int partition = result.Partition.Value;
        long offset = result.Offset.Value;
        var now = DateTime.UtcNow;
        var timestamp = result.Message.Timestamp;
        ref var pending = ref batch.Events[batch.Count++];
        pending.Partition = partition;
        pending.Offset = offset;
        pending.Payload = payload;
        pending.Time = timestamp.Type == TimestampType.NotAvailable ? now : timestamp.UtcDateTime;
        int features = batch.Scorer.Bundle.Schema.Count;
        var decoded = batch.Model.Decoder.Decode(payload,
            batch.Scorer.X.Slice(batch.Rows * features, features), batch.Scorer.Mask.Slice(batch.Rows * features, features));
        if (decoded.IsSuccess)
        {
            pending.Row = batch.Rows++;
            pending.Entity = decoded.Entity;
            pending.EventTime = decoded.EventTime;
        }
        else
        {
            pending.Row = -1;
            batch.DeadLetters.Add(DeadLetter.ForDecodeFailure(decoded, Name, _detector.Options.Topic, partition, offset, now, payload));
        }
        batch.NextOffsets[partition] = offset + 1;
    }

    /// <summary>Starts committing the current batch in the background and switches to the other one.</summary>
    private void StartCommit()
    {
        if (_current.Count == 0)
            return;
        _committing = _current;
        _commit = CommitAsync(_committing);
        _current = ReferenceEquals(_current, _batches[0]) ? _batches[1] : _batches[0];
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
                catch (Exception e) when (IsTransient(e) || e is BrokenCircuitException)
                {
                    if (!paused)
                    {
                        pausedPartitions = consumer.Assignment;
                        consumer.Pause(pausedPartitions);
                        paused = true;
                        _logger.LogWarning("Detector {Detector}: cannot commit ({Error}); partitions paused, {Count} events kept until it can",
                            Name, e.Message, batch.Count + _current.Count);
                    }
                    _health.SetProblem(Name, $"cannot commit to PostgreSQL or the dead-letter topic: {e.Message}");
                    cancellationToken.ThrowIfCancellationRequested();
                    PollWhilePaused(consumer);
                    // A revocation in there commits or drops the batches itself.
                    if (_commit is not null)
                        _commit = CommitAsync(batch);
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

    /// <summary>Sends the batch's dead letters and commits it through the resilience pipeline (cancelled only by
    /// the shutdown deadline, see <see cref="_writeDeadline"/>). Runs in the background: touches only the batch.</summary>
    private async Task CommitAsync(Batch batch)
    {
        var clock = Stopwatch.GetTimestamp();
        try
        {
            await _pipeline.ExecuteAsync(static (state, ct) => state.Worker.WriteAsync(state.Batch, ct), (Worker: this, Batch: batch),
                _writeDeadline.Token);
        }
        catch (PostgresException e) when (e.SqlState.StartsWith("22", StringComparison.Ordinal))
        {
            // A payload jsonb refuses despite the checks in EventJson: store every event of the batch as base64.
            _logger.LogWarning("Detector {Detector}: PostgreSQL rejected an event ({Error}); storing the batch's events as base64", Name, e.MessageText);
            for (int i = 0; i < batch.Record.Events.Count; i++)
                batch.Record.Events[i] = EventJson.ForJsonb(batch.FlaggedPayloads[i], wrap: true);
            foreach (var sample in (ReadOnlySpan<SampleRows>)[batch.Record.Training, batch.Record.Recent])
            {
                for (int i = 0; i < sample.Count; i++)
                    sample.Events[i] = EventJson.ForJsonb(sample.Payloads[i], wrap: true);
            }
            await _pipeline.ExecuteAsync(static (state, ct) => state.Worker.WriteAsync(state.Batch, ct), (Worker: this, Batch: batch),
                _writeDeadline.Token);
        }
        _metrics.CommitSeconds.Record(Stopwatch.GetElapsedTime(clock).TotalSeconds, _tag);
    }

    private async ValueTask WriteAsync(Batch batch, CancellationToken cancellationToken)
    {
        if (!batch.DeadLettersSent)
        {
            await _deadLetterProducer.SendAsync(_detector.Options.ResolvedDeadLetterTopic, batch.DeadLetters, cancellationToken);
            // Sent once per batch: a database retry must not send them again.
            batch.DeadLettersSent = true;
        }
        await _store.WriteAsync(batch.Record, cancellationToken);
    }

    /// <summary>After a batch's commit: metrics, lag, advisory Kafka commit; the batch is emptied for reuse.</summary>
    private void Committed(IConsumer<Ignore, byte[]> consumer, Batch batch)
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

    /// <summary>Runs the model over the decoded rows (once) and fills the batch's record: anomaly rows, offsets, stats.</summary>
    private void Build(Batch batch)
    {
        if (batch.Built)
            return;
        var clock = Stopwatch.GetTimestamp();
        if (batch.Rows > 0)
            batch.Scorer.Run(batch.Rows);
        var scores = batch.Rows > 0 ? batch.Scorer.Scores(batch.Rows) : default;
        var featureScores = batch.Rows > 0 ? batch.Scorer.FeatureScores(batch.Rows) : default;
        _metrics.ScoringSeconds.Record(Stopwatch.GetElapsedTime(clock).TotalSeconds, _tag);

        var record = batch.Record;
        record.Clear();
        if (batch.Model.Version != _windowVersion)
        {
            // Statistics rows are per model version: a new version's window starts without the old version's scores.
            _window = new ScoreWindow(_scoring.StatsWindowSeconds);
            _windowVersion = batch.Model.Version;
        }
        _window.Advance(DateTime.UtcNow);
        for (int r = 0; r < batch.Rows; r++)
            _window.Add(scores[r]);
        record.WindowStart = _window.Start;
        record.WindowSeconds = _window.WindowSeconds;
        record.EventsScored = batch.Rows;
        record.EventsDeadLettered = batch.DeadLetters.Count;
        record.Quantiles = batch.Rows > 0 ? _window.Quantiles() : null;
        record.TrainingSampleSize = _retraining.SampleSize;
        record.RecentSize = _retraining.RecentSize;
        var edges = BinEdges(batch.Model.Bundle.Calibration);
        // Size 0 turns a sample off: its rate then admits nothing.
        double recentRate = _retraining.RecentSize > 0 ? _retraining.RecentRate : 0;
        double sampleRate = _retraining.SampleSize > 0 ? _retraining.SampleRate : 0;
        int features = batch.Scorer.Bundle.Schema.Count;
        for (int i = 0; i < batch.Count; i++)
        {
            ref readonly var pending = ref batch.Events[i];
            if (pending.Row < 0)
                continue;
            double score = scores[pending.Row];
            if (double.IsNaN(score))
                continue;
            record.ScoreBins[ScoreDrift.BinOf(edges, score)]++;
            bool flagged = score > batch.Model.Threshold;
            // One draw per scored event decides both samples (no allocation unless admitted): [0, recentRate) →
            // recent events; [recentRate, recentRate + sampleRate) and scored as normal → training sample.
            double u = _sampling.NextDouble();
            if (u < recentRate)
                record.Recent.Add(pending.Partition, pending.Offset, pending.EventTime?.UtcDateTime,
                    double.IsFinite(score) ? score : float.MaxValue, flagged, pending.Payload, 0);
            else if (!flagged && double.IsFinite(score) && u < recentRate + sampleRate)
                record.Training.Add(pending.Partition, pending.Offset, pending.EventTime?.UtcDateTime, score, false, pending.Payload,
                    _sampling.NextDouble());
            if (!flagged)
                continue;
            record.Partitions.Add(pending.Partition);
            record.Offsets.Add(pending.Offset);
            record.Entities.Add(pending.Entity.GetString(pending.Payload));
            record.EventTimes.Add(pending.EventTime?.UtcDateTime);
            // The table keeps only finite scores; +inf (possible in float32) is stored as the largest float.
            record.Scores.Add(double.IsFinite(score) ? score : float.MaxValue);
            record.PValues.Add(batch.Model.Bundle.Calibration.PValue(score));
            record.Contributions.Add(Contributions(batch.Scorer, featureScores.Slice(pending.Row * features, features)));
            record.Events.Add(EventJson.ForJsonb(pending.Payload));
            batch.FlaggedPayloads.Add(pending.Payload);
        }
        foreach (var (partition, next) in batch.NextOffsets)
        {
            record.OffsetPartitions.Add(partition);
            record.NextOffsets.Add(next);
        }
        batch.Built = true;
    }

    private double[] BinEdges(Calibration calibration)
    {
        if (!ReferenceEquals(calibration, _binEdgesOf))
        {
            _binEdges = ScoreDrift.Edges(calibration);
            _binEdgesOf = calibration;
        }
        return _binEdges;
    }

    /// <summary>FNV-1a of the detector's name: a seed that is the same in every process (string hashes are not).</summary>
    private static int StableSeed(string name)
    {
        uint hash = 2166136261;
        foreach (char c in name)
            hash = (hash ^ c) * 16777619;
        return (int)hash;
    }

    /// <summary>[{"feature": name, "score": s}, ...], largest first.</summary>
    private string Contributions(ModelScorer scorer, ReadOnlySpan<float> featureScores)
    {
        var names = scorer.Bundle.Schema.Features;
        if (_order.Length != featureScores.Length)
        {
            // First use, or a new model version with another feature count.
            _order = new int[featureScores.Length];
            _keys = new float[featureScores.Length];
        }
        for (int j = 0; j < _order.Length; j++)
        {
            _order[j] = j;
            // NaN last: sort as -inf.
            _keys[j] = float.IsNaN(featureScores[j]) ? float.NegativeInfinity : -featureScores[j];
        }
        Array.Sort(_keys, _order);
        _json.ResetWrittenCount();
        using (var writer = new Utf8JsonWriter(_json))
        {
            writer.WriteStartArray();
            foreach (int j in _order)
            {
                writer.WriteStartObject();
                writer.WriteString("feature", names[j].Name);
                float value = featureScores[j];
                if (float.IsFinite(value))
                    writer.WriteNumber("score", value);
                else
                    writer.WriteNull("score");
                writer.WriteEndObject();
            }
            writer.WriteEndArray();
        }
        return Encoding.UTF8.GetString(_json.WrittenSpan);
    }

    private void CommitToKafka(IConsumer<Ignore, byte[]> consumer, Batch batch)
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

    /// <summary>Forgets every event not committed (they are read again from the stored offsets).</summary>
    private void DropAll()
    {
        _commit = null;
        _committing = null;
        foreach (var batch in _batches)
            batch.Clear();
    }

    /// <summary>Failures worth retrying: the database or Kafka away, timeouts. Not: bad SQL, rejected data.</summary>
    private static bool IsTransient(Exception e) => e switch
    {
        PostgresException p => !(p.SqlState.StartsWith("22", StringComparison.Ordinal) || p.SqlState.StartsWith("23", StringComparison.Ordinal)
                                 || p.SqlState.StartsWith("42", StringComparison.Ordinal)),
        NpgsqlException or TimeoutException or KafkaException or IOException or System.Net.Sockets.SocketException => true,
        _ => false,
    };

    private struct PendingEvent
    {
        public int Partition;
        public long Offset;
        public int Row;
        public byte[] Payload;
        public DateTime Time;
        public EventEntity Entity;
        public DateTimeOffset? EventTime;
    }

    /// <summary>One micro-batch: decoded rows in its scorer's input buffers, its events, dead letters, next offsets
    /// and the record it commits. Reused after each commit; bound to one model version at a time.</summary>
    private sealed class Batch : IDisposable
    {
        private DetectorModel? _model;
        private ModelScorer? _scorer;

        public Batch(string detector, string topic, int capacity)
        {
            Events = new PendingEvent[capacity];
            Record = new BatchRecord(detector, topic);
        }

        /// <summary>The version this batch scores with (set by <see cref="Bind"/> before its first event).</summary>
        public DetectorModel Model => _model!;

        /// <summary>The version's scorer, with input and output buffers shaped for its feature count.</summary>
        public ModelScorer Scorer => _scorer!;

        /// <summary>Binds the (empty) batch to <paramref name="model"/>, whose reference it takes over, and lets go of
        /// the previous version (disposed once no batch and not the detector uses it).</summary>
        public void Bind(DetectorModel model)
        {
            ModelScorer scorer;
            try
            {
                scorer = model.Bundle.CreateScorer(Capacity);
            }
            catch
            {
                model.Release();
                throw;
            }
            Release();
            _model = model;
            _scorer = scorer;
            Record.ModelVersion = model.Version;
            Record.Threshold = model.Threshold;
        }

        public PendingEvent[] Events { get; }

        public int Capacity => Events.Length;

        public List<DeadLetter> DeadLetters { get; } = [];

        public Dictionary<int, long> NextOffsets { get; } = [];

        public BatchRecord Record { get; }

        /// <summary>Payloads of the flagged rows, in <see cref="BatchRecord.Events"/> order.</summary>
        public List<byte[]> FlaggedPayloads { get; } = [];

        public int Count { get; set; }

        public int Rows { get; set; }

        public bool Built { get; set; }

        public bool DeadLettersSent { get; set; }

        public void Clear()
        {
            Array.Clear(Events, 0, Count);
            Count = 0;
            Rows = 0;
            DeadLetters.Clear();
            NextOffsets.Clear();
            FlaggedPayloads.Clear();
            Record.Clear();
            Built = false;
            DeadLettersSent = false;
        }

        public void Dispose() => Release();

        private void Release()
        {
            _scorer?.Dispose();
            _model?.Release();
            _scorer = null;
            _model = null;
        }
    }
}
