using System.Diagnostics;
using AnomalyVae.Storage;
using Confluent.Kafka;
using Microsoft.Extensions.Logging;
using Polly;

namespace AnomalyVae.Streaming;

/// <summary>
/// A detector's Kafka side: the group member, where each assigned partition resumes (its offset stored in
/// PostgreSQL, never Kafka's), pause and resume while commits cannot land, the lag gauge and the advisory Kafka
/// commit. What to do with the batches in memory when partitions are revoked or lost is the worker's
/// (<paramref name="onRevoked"/>, <paramref name="onLost"/>); they run on the consumer thread, inside
/// <see cref="Consume"/>.
/// </summary>
public sealed class DetectorConsumer(Detector detector, KafkaOptions kafka, OffsetStore offsets, ResiliencePipeline retries,
    ServiceMetrics metrics, ServiceHealth health, ILogger logger, Action<List<TopicPartitionOffset>> onRevoked,
    Action<List<TopicPartitionOffset>> onLost, Action<IReadOnlyCollection<int>>? onAssigned = null) : IDisposable
{
    private static readonly TimeSpan StalledPoll = TimeSpan.FromMilliseconds(250);
    private static readonly TimeSpan KafkaCommitInterval = TimeSpan.FromSeconds(1);

    // Partitions whose start offset came from PostgreSQL; events of any other partition are never processed.
    private readonly HashSet<int> _assigned = [];
    // Next offset committed per owned partition, for the lag gauge.
    private readonly Dictionary<int, long> _committed = [];
    private IConsumer<Ignore, byte[]>? _consumer;
    private List<TopicPartition> _paused = [];
    private long _lastKafkaCommit;
    private long _lastLagUpdate;
    private CancellationToken _stopping;

    private string Name => detector.Name;

    private string Topic => detector.Options.Topic;

    public string GroupId => detector.Options.GroupId is { Length: > 0 } group ? group : $"{kafka.GroupId}.{Name}";

    public bool IsPaused => _paused.Count > 0;

    /// <summary>Joins the group and subscribes; <paramref name="stopping"/> cuts short a wait for stored offsets.</summary>
    public void Start(CancellationToken stopping)
    {
        _stopping = stopping;
        var config = kafka.ToConsumerConfig();
        config.GroupId = GroupId;
        // Offsets live in PostgreSQL; Kafka commits are advisory and explicit.
        config.EnableAutoCommit = false;
        config.EnableAutoOffsetStore = false;
        config.AutoOffsetReset = detector.Options.StartFrom == StartFrom.Latest ? AutoOffsetReset.Latest : AutoOffsetReset.Earliest;
        DetectorConsumerSettings.Apply(config, kafka);
        _consumer = new ConsumerBuilder<Ignore, byte[]>(config)
            .SetLogHandler((_, m) => KafkaLog.Write(logger, m))
            .SetErrorHandler((_, e) => logger.LogWarning("Detector {Detector}: Kafka: {Reason} ({Code})", Name, e.Reason, e.Code))
            .SetPartitionsAssignedHandler(OnAssigned)
            .SetPartitionsRevokedHandler((_, partitions) => { onRevoked(partitions); Forget(partitions); })
            .SetPartitionsLostHandler((_, partitions) => { onLost(partitions); Forget(partitions); })
            .Build();
        _consumer.Subscribe(Topic);
        logger.LogInformation("Detector {Detector}: consuming {Topic} as group {Group}", Name, Topic, GroupId);
    }

    /// <summary>The next event of an owned partition, or null (none within <paramref name="wait"/>, or one of a
    /// partition this member does not own). Rebalance callbacks run in here.</summary>
    public ConsumeResult<Ignore, byte[]>? Consume(TimeSpan wait)
    {
        ConsumeResult<Ignore, byte[]>? result;
        try
        {
            result = _consumer!.Consume(wait);
        }
        catch (ConsumeException e)
        {
            logger.LogWarning("Detector {Detector}: consume error: {Reason}", Name, e.Error.Reason);
            return null;
        }
        if (result?.Message is null)
        {
            // Idle: keep the lag gauge current (the broker's high watermark moves without us).
            if (Stopwatch.GetElapsedTime(_lastLagUpdate) > TimeSpan.FromSeconds(1))
                UpdateLag();
            return null;
        }
        return _assigned.Contains(result.Partition.Value) ? result : null;
    }

    /// <summary>Stops fetching (commits cannot land); the member stays in its group through <see cref="PollWhilePaused"/>.</summary>
    public void Pause()
    {
        if (IsPaused)
            return;
        _paused = _consumer!.Assignment;
        _consumer.Pause(_paused);
    }

    public void Resume()
    {
        if (!IsPaused)
            return;
        var still = _consumer!.Assignment;
        _consumer.Resume(_paused.Where(still.Contains));
        _paused = [];
    }

    /// <summary>Keeps the consumer in its group while paused. Rebalance callbacks run in here; a message that still
    /// arrives is given back by seeking to it, so it is read again after resuming.</summary>
    public void PollWhilePaused()
    {
        try
        {
            var result = _consumer!.Consume(StalledPoll);
            if (result?.Message is not null)
                _consumer.Seek(result.TopicPartitionOffset);
        }
        catch (ConsumeException e)
        {
            logger.LogDebug("Detector {Detector}: consume error while paused: {Reason}", Name, e.Error.Reason);
        }
    }

    /// <summary>After a batch's commit: the lag gauge and (at most once a second) the advisory Kafka commit.</summary>
    public void Committed(IReadOnlyDictionary<int, long> nextOffsets)
    {
        foreach (var (partition, next) in nextOffsets)
            _committed[partition] = next;
        UpdateLag();
        // Advisory only (PostgreSQL has the truth): failures are harmless.
        if (Stopwatch.GetElapsedTime(_lastKafkaCommit) < KafkaCommitInterval && !_stopping.IsCancellationRequested)
            return;
        _lastKafkaCommit = Stopwatch.GetTimestamp();
        try
        {
            _consumer!.Commit(nextOffsets.Select(p => new TopicPartitionOffset(Topic, p.Key, p.Value)));
        }
        catch (KafkaException e)
        {
            logger.LogDebug("Detector {Detector}: advisory Kafka commit failed: {Reason}", Name, e.Error.Reason);
        }
    }

    /// <summary>Leaves the group (the worker has committed or dropped what it held).</summary>
    public void Close()
    {
        _consumer?.Close();
        logger.LogInformation("Detector {Detector}: left group {Group}", Name, GroupId);
    }

    public void Dispose() => _consumer?.Dispose();

    /// <summary>Seeks every assigned partition to its offset stored in PostgreSQL (or the configured start).</summary>
    private IEnumerable<TopicPartitionOffset> OnAssigned(IConsumer<Ignore, byte[]> consumer, List<TopicPartition> partitions)
    {
        var numbers = partitions.Select(p => p.Partition.Value).ToArray();
        IReadOnlyDictionary<int, long>? stored = null;
        while (stored is null)
        {
            try
            {
                stored = retries.ExecuteAsync(async ct => await offsets.LoadAsync(Name, Topic, numbers, ct), _stopping).AsTask().GetAwaiter().GetResult();
                health.ClearProblem(Name);
            }
            catch (Exception e) when (BatchCommitter.IsRetryable(e))
            {
                health.SetProblem(Name, $"cannot read stored offsets from PostgreSQL: {e.Message}");
                logger.LogWarning("Detector {Detector}: cannot read stored offsets ({Error}); retrying", Name, e.Message);
                Thread.Sleep(StalledPoll);
            }
            catch (OperationCanceledException)
            {
                // Shutting down: take the partitions without processing any of them (none is in _assigned).
                return partitions.Select(p => new TopicPartitionOffset(p, Offset.Unset));
            }
        }
        var start = detector.Options.StartFrom == StartFrom.Latest ? Offset.End : Offset.Beginning;
        var result = new List<TopicPartitionOffset>(partitions.Count);
        foreach (var partition in partitions)
        {
            var offset = stored.TryGetValue(partition.Partition.Value, out var next) ? new Offset(next) : start;
            if (offset.Value >= 0)
                _committed[partition.Partition.Value] = offset.Value;
            result.Add(new TopicPartitionOffset(partition, offset));
            _assigned.Add(partition.Partition.Value);
        }
        health.SetAssignment(Name, _assigned);
        // Before any event of these partitions is handed out: the worker reads their window state first.
        onAssigned?.Invoke(numbers);
        logger.LogInformation("Detector {Detector}: assigned {Partitions}", Name, string.Join(", ", result.Select(r => $"{r.Partition.Value}@{r.Offset}")));
        return result;
    }

    private void Forget(List<TopicPartitionOffset> partitions)
    {
        foreach (var partition in partitions)
        {
            _assigned.Remove(partition.Partition.Value);
            _committed.Remove(partition.Partition.Value);
            metrics.ClearLag(Name, partition.Partition.Value);
        }
        health.SetAssignment(Name, _assigned);
    }

    private void UpdateLag()
    {
        _lastLagUpdate = Stopwatch.GetTimestamp();
        foreach (var (partition, next) in _committed)
        {
            var watermarks = _consumer!.GetWatermarkOffsets(new TopicPartition(Topic, partition));
            if (watermarks.High != Offset.Unset)
                metrics.SetLag(Name, partition, watermarks.High.Value - next);
        }
    }
}
