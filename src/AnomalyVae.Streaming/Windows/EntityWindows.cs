using System.Security.Cryptography;
using System.Text;
using AnomalyVae.Events;
using AnomalyVae.Model;
using AnomalyVae.Storage;
using Microsoft.Extensions.Logging;
using Polly;

namespace AnomalyVae.Streaming;

/// <summary>
/// A windowed detector's state: per (partition, entity) its last W−1 decoded events (<see cref="EntityHistory"/>).
/// PostgreSQL holds the committed state (written with each batch's offsets, <see cref="WindowStateStore"/>); memory
/// is a cache of it plus the batches not yet committed. A newly assigned partition's state is read before its first
/// event is scored; beyond <c>Scoring:MaxWindowEntities</c> entities the least recently seen committed ones are
/// evicted and read again on their next event, in one query per micro-batch. Used by one batch build at a time.
/// </summary>
public sealed class EntityWindows
{
    private static readonly TimeSpan RetryPause = TimeSpan.FromMilliseconds(250);

    private readonly string _detector;
    private readonly string _topic;
    private readonly WindowStateStore? _store;
    private readonly ResiliencePipeline _retries;
    private readonly ILogger _logger;
    private readonly Lock _lock = new();
    private readonly Dictionary<int, PartitionEntities> _partitions = [];
    // Partitions this member owns, and those whose stored state has not been read since assignment (or a reset).
    private readonly HashSet<int> _owned = [];
    private readonly HashSet<int> _unread = [];
    private readonly List<EntityHistory> _misses = [];
    private readonly List<EntityHistory> _evictable = [];
    private readonly char[] _entity = new char[2 * EventDecoder.MaxEntityBytes];
    private long _batch;
    private long _committed;
    private string? _spec;
    private FeatureSchema? _specOf;
    private int _capacity;
    private int _features;

    /// <param name="store">Where the committed state lives; null keeps state in memory only (tests, benchmarks).</param>
    public EntityWindows(string detector, string topic, int maxEntities, WindowStateStore? store, ResiliencePipeline? retries, ILogger logger)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxEntities, 1);
        _detector = detector;
        _topic = topic;
        MaxEntities = maxEntities;
        _store = store;
        _retries = retries ?? ResiliencePipeline.Empty;
        _logger = logger;
    }

    /// <summary>Scoring:MaxWindowEntities: entities kept in memory before the least recently seen are evicted.</summary>
    public int MaxEntities { get; }

    /// <summary>Entities in memory.</summary>
    public int Count { get; private set; }

    /// <summary>Cuts short waiting for PostgreSQL while reading state (the worker's write deadline).</summary>
    public CancellationToken Stopping { get; set; }

    /// <summary>Queries that read stored state (assignments and misses), for tests and the benchmark.</summary>
    public long Loads { get; private set; }

    /// <summary>Entities evicted so far.</summary>
    public long Evicted { get; private set; }

    /// <summary>The fingerprint of the feature encoding the state was decoded with (null before a windowed batch).</summary>
    public string? Spec => _spec;

    /// <summary>Partitions assigned to this member: their stored state is read before their next event is scored.</summary>
    public void Assigned(IEnumerable<int> partitions)
    {
        lock (_lock)
        {
            foreach (int p in partitions)
            {
                _owned.Add(p);
                _unread.Add(p);
            }
        }
    }

    /// <summary>Partitions revoked or lost: their state leaves memory (another member may advance it).</summary>
    public void Forget(IEnumerable<int> partitions)
    {
        lock (_lock)
        {
            foreach (int p in partitions)
            {
                _owned.Remove(p);
                _unread.Remove(p);
                if (_partitions.Remove(p, out var entities))
                    Count -= entities.Map.Count;
            }
        }
    }

    /// <summary>Uncommitted batches were dropped: memory may be ahead of PostgreSQL, so it is read again.</summary>
    public void Reset()
    {
        lock (_lock)
            ClearMemory();
    }

    /// <summary>Batch <paramref name="sequence"/> (and every one before it) is committed: its entities may be evicted.</summary>
    public void Committed(long sequence)
    {
        if (sequence > Volatile.Read(ref _committed))
            Volatile.Write(ref _committed, sequence);
    }

    /// <summary>A batch scored by a model without a window: the state stops following the stream, so it is
    /// dropped (a swap back reads the stored state, which is as old as the last windowed batch).</summary>
    public void Suspend()
    {
        lock (_lock)
        {
            if (_spec is null)
                return;
            _logger.LogInformation("Detector {Detector}: the model has no window; per-entity window state is no longer kept", _detector);
            ClearMemory();
            _spec = null;
            _specOf = null;
        }
    }

    /// <summary>
    /// Starts a batch scored with <paramref name="schema"/> and <paramref name="window"/>: adapts the state to a
    /// swapped model (same feature encoding: kept, the newest W−1 steps; another: reset), evicts beyond the cap,
    /// reads newly assigned partitions. Returns the batch's sequence number (see <see cref="Committed"/>).
    /// </summary>
    public long BeginBatch(FeatureSchema schema, WindowDefinition window)
    {
        lock (_lock)
        {
            var spec = ReferenceEquals(schema, _specOf) ? _spec! : Fingerprint(schema);
            if (spec != _spec)
            {
                if (_spec is not null)
                    _logger.LogWarning("Detector {Detector}: the new model encodes its features differently; per-entity window state starts over (stored state of the old encoding is ignored)",
                        _detector);
                ClearMemory();
                _spec = spec;
                _features = schema.Count;
            }
            _specOf = schema;
            if (window.Steps - 1 != _capacity)
            {
                if (_capacity != 0)
                    _logger.LogInformation("Detector {Detector}: window of {Old} -> {New} events; per-entity state kept (the newest {Kept} events)",
                        _detector, _capacity + 1, window.Steps, Math.Min(_capacity, window.Steps - 1));
                _capacity = window.Steps - 1;
                foreach (var entities in _partitions.Values)
                {
                    foreach (var history in entities.Map.Values)
                        history.Resize(_capacity);
                }
            }
            if (Count > MaxEntities)
                Evict();
            if (_unread.Count > 0)
                ReadPartitions();
            return ++_batch;
        }
    }

    /// <summary>The history of <paramref name="entity"/> in <paramref name="partition"/> (decoded from
    /// <paramref name="payload"/>), created on first sight; a miss that PostgreSQL may hold waits for
    /// <see cref="ReadMisses"/>. Allocates only for an entity not in memory.</summary>
    public EntityHistory Find(int partition, EventEntity entity, ReadOnlySpan<byte> payload, long batch)
    {
        if (!_partitions.TryGetValue(partition, out var entities))
            _partitions.Add(partition, entities = new PartitionEntities());
        if (!entity.TryCopyTo(payload, _entity, out int written))
            throw new InvalidOperationException("entity longer than the decoder allows");
        var key = _entity.AsSpan(0, written);
        if (!entities.Lookup.TryGetValue(key, out var history))
        {
            history = new EntityHistory(partition, key.ToString(), _capacity, _features);
            entities.Map.Add(history.Entity, history);
            Count++;
            // A partition read completely (nothing evicted since) has no stored state for an entity not in memory.
            if (!entities.Complete && _store is not null)
            {
                history.Pending = true;
                _misses.Add(history);
            }
        }
        history.Batch = batch;
        return history;
    }

    /// <summary>Reads the stored state of this batch's misses in one query.</summary>
    public void ReadMisses()
    {
        if (_misses.Count == 0)
            return;
        // In its own method: the query's closure would otherwise be allocated on every call, misses or not.
        ReadMissesNow();
    }

    private void ReadMissesNow()
    {
        var partitions = new int[_misses.Count];
        var names = new string[_misses.Count];
        for (int i = 0; i < _misses.Count; i++)
            (partitions[i], names[i]) = (_misses[i].Partition, _misses[i].Entity);
        var rows = Read((store, ct) => store.LoadEntitiesAsync(_detector, _topic, partitions, names, _spec!, ct));
        foreach (var row in rows)
        {
            if (_partitions.TryGetValue(row.Partition, out var entities) && entities.Map.TryGetValue(row.Entity, out var history) && history.Pending)
                Restore(history, row);
        }
        foreach (var history in _misses)
            history.Pending = false;
        _misses.Clear();
    }

    private void ReadPartitions()
    {
        int[] partitions = [.. _unread];
        int room = Math.Max(0, MaxEntities - Count);
        var rows = room == 0 ? [] : Read((store, ct) => store.LoadPartitionsAsync(_detector, _topic, partitions, _spec!, room + 1, ct));
        // All of it fits: an entity not in memory then has no stored state, and needs no query.
        bool complete = _store is null || (room > 0 && rows.Count <= room);
        foreach (int p in partitions)
        {
            if (!_partitions.TryGetValue(p, out var entities))
                _partitions.Add(p, entities = new PartitionEntities());
            entities.Complete = complete;
        }
        foreach (var row in rows.Take(room))
        {
            var entities = _partitions[row.Partition];
            if (entities.Map.ContainsKey(row.Entity))
                continue;
            var history = new EntityHistory(row.Partition, row.Entity, _capacity, _features);
            Restore(history, row);
            entities.Map.Add(history.Entity, history);
            Count++;
        }
        _unread.Clear();
        _logger.LogInformation("Detector {Detector}: read the window state of partitions {Partitions}: {Entities} entities{More}", _detector,
            string.Join(", ", partitions), Math.Min(rows.Count, room), complete ? "" : " (more are read on their next event)");
    }

    private void Restore(EntityHistory history, WindowStateRow row)
    {
        try
        {
            history.Unpack(row.State, row.LastOffset);
        }
        catch (FormatException e)
        {
            // Written by this code with the same fingerprint, so only a hand-edited row gets here: start the entity over, say so.
            _logger.LogWarning("Detector {Detector}: stored window state of {Entity} (partition {Partition}) is unreadable ({Error}); the entity starts over",
                _detector, row.Entity, row.Partition, e.Message);
        }
    }

    private List<WindowStateRow> Read(Func<WindowStateStore, CancellationToken, Task<List<WindowStateRow>>> load)
    {
        if (_store is null)
            return [];
        Loads++;
        while (true)
        {
            try
            {
                return _retries.ExecuteAsync(async (s, ct) => await load(s, ct), _store, Stopping).AsTask().GetAwaiter().GetResult();
            }
            catch (Exception e) when (BatchCommitter.IsRetryable(e) && !Stopping.IsCancellationRequested)
            {
                // PostgreSQL away: the batch waits (commits cannot land either); the worker's deadline ends the wait.
                _logger.LogWarning("Detector {Detector}: cannot read window state ({Error}); retrying", _detector, e.Message);
                Thread.Sleep(RetryPause);
            }
        }
    }

    /// <summary>Evicts the least recently seen committed entities down to 90 % of the cap (hysteresis: one sort per
    /// tenth of the cap of new entities, not one per batch).</summary>
    private void Evict()
    {
        long committed = Volatile.Read(ref _committed);
        _evictable.Clear();
        foreach (var entities in _partitions.Values)
        {
            foreach (var history in entities.Map.Values)
            {
                if (history.Batch <= committed)
                    _evictable.Add(history);
            }
        }
        int excess = Count - (int)(MaxEntities * 0.9);
        if (excess <= 0)
            return;
        _evictable.Sort(static (a, b) => a.Batch.CompareTo(b.Batch));
        foreach (var history in _evictable.Take(excess))
        {
            var entities = _partitions[history.Partition];
            entities.Map.Remove(history.Entity);
            entities.Complete = false;
            Count--;
            Evicted++;
        }
        _evictable.Clear();
    }

    private void ClearMemory()
    {
        _partitions.Clear();
        _misses.Clear();
        Count = 0;
        _unread.UnionWith(_owned);
    }

    /// <summary>What the stored steps depend on: the features' names, kinds, log flags, vocabularies and binary
    /// tokens (not centers and scales: the graph standardizes, so a retrained model of the same spec keeps the state).</summary>
    public static string Fingerprint(FeatureSchema schema)
    {
        ArgumentNullException.ThrowIfNull(schema);
        var text = new StringBuilder();
        foreach (var f in schema.Features)
        {
            text.Append(f.Name).Append('\u001f').Append((int)f.Kind).Append('\u001f').Append(f.Log ? '1' : '0').Append('\u001f');
            foreach (var list in (ReadOnlySpan<IReadOnlyList<string>>)[f.Vocabulary, f.FalseTokens, f.TrueTokens])
                text.AppendJoin('\u001e', list).Append('\u001f');
            text.Append('\u001d');
        }
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text.ToString())))[..32];
    }

    private sealed class PartitionEntities
    {
        public PartitionEntities()
        {
            Map = new Dictionary<string, EntityHistory>(StringComparer.Ordinal);
            Lookup = Map.GetAlternateLookup<ReadOnlySpan<char>>();
        }

        public Dictionary<string, EntityHistory> Map { get; }

        public Dictionary<string, EntityHistory>.AlternateLookup<ReadOnlySpan<char>> Lookup { get; }

        /// <summary>Every stored entity of the partition is in memory (read at assignment, nothing evicted since).</summary>
        public bool Complete { get; set; }
    }
}
