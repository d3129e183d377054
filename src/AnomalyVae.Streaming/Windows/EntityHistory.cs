using System.Buffers.Binary;
using AnomalyVae.Model;

namespace AnomalyVae.Streaming;

/// <summary>
/// One (partition, entity)'s last W−1 decoded events in a ring: per step the feature values and the missing mask
/// exactly as the decoder wrote them (what <see cref="WindowAssembly"/> puts in a window), and one byte saying
/// whether the event was flagged (kept for scoring rules that mask flagged history). Allocated once per entity.
/// </summary>
public sealed class EntityHistory
{
    private float[] _values;
    private float[] _mask;
    private byte[] _flags;
    // Ring: the oldest step is at _start; _appended counts every step ever appended (for SetFlag's check).
    private int _start;
    private long _appended;

    public EntityHistory(int partition, string entity, int capacity, int features)
    {
        Partition = partition;
        Entity = entity;
        Features = features;
        Capacity = capacity;
        _values = new float[capacity * features];
        _mask = new float[capacity * features];
        _flags = new byte[capacity];
    }

    public int Partition { get; }

    public string Entity { get; }

    public int Features { get; }

    /// <summary>W−1: the most steps kept.</summary>
    public int Capacity { get; private set; }

    /// <summary>Steps held (≤ <see cref="Capacity"/>).</summary>
    public int Count { get; private set; }

    /// <summary>Offset of the newest event in the state; −1 when none.</summary>
    public long LastOffset { get; private set; } = -1;

    /// <summary>The sequence number of the last batch that touched this entity (eviction keeps the uncommitted).</summary>
    internal long Batch { get; set; }

    /// <summary>The batch whose record holds this entity's packed state already.</summary>
    internal long PackedIn { get; set; }

    /// <summary>Waiting for its stored state to be read (a miss of this batch).</summary>
    internal bool Pending { get; set; }

    /// <summary>The scorer row of this entity's newest event in batch <see cref="LastRowIn"/> (the flagged-history waves).</summary>
    internal int LastRow { get; set; }

    /// <summary>The batch <see cref="LastRow"/> belongs to.</summary>
    internal long LastRowIn { get; set; }

    /// <summary>Step <paramref name="back"/> (1 = the newest held) of the history; back ≤ <see cref="Count"/>.</summary>
    public void Step(int back, out ReadOnlySpan<float> values, out ReadOnlySpan<float> mask)
    {
        int slot = (_start + Count - back) % Capacity;
        values = _values.AsSpan(slot * Features, Features);
        mask = _mask.AsSpan(slot * Features, Features);
    }

    /// <summary>Whether step <paramref name="back"/> (1 = the newest held) was flagged.</summary>
    public bool Flagged(int back) => _flags[(_start + Count - back) % Capacity] != 0;

    /// <summary>Appends an event as the newest step (dropping the oldest when full); returns its append number for <see cref="SetFlag"/>.</summary>
    public long Append(ReadOnlySpan<float> values, ReadOnlySpan<float> mask, long offset)
    {
        int slot;
        if (Count < Capacity)
        {
            slot = (_start + Count) % Capacity;
            Count++;
        }
        else
        {
            slot = _start;
            _start = (_start + 1) % Capacity;
        }
        values.CopyTo(_values.AsSpan(slot * Features, Features));
        mask.CopyTo(_mask.AsSpan(slot * Features, Features));
        _flags[slot] = 0;
        LastOffset = offset;
        return _appended++;
    }

    /// <summary>Records whether appended event <paramref name="appended"/> was flagged (if it is still held).</summary>
    public void SetFlag(long appended, bool flagged)
    {
        long age = _appended - 1 - appended;
        if (age < 0 || age >= Count)
            return;
        _flags[(_start + Count - 1 - (int)age) % Capacity] = flagged ? (byte)1 : (byte)0;
    }

    /// <summary>Keeps the newest <paramref name="capacity"/> steps at most (a model swap to another W, same features).</summary>
    public void Resize(int capacity)
    {
        if (capacity == Capacity)
            return;
        int keep = Math.Min(Count, capacity);
        var values = new float[capacity * Features];
        var mask = new float[capacity * Features];
        var flags = new byte[capacity];
        for (int i = 0; i < keep; i++)
        {
            int back = keep - i;
            Step(back, out var v, out var m);
            v.CopyTo(values.AsSpan(i * Features, Features));
            m.CopyTo(mask.AsSpan(i * Features, Features));
            flags[i] = Flagged(back) ? (byte)1 : (byte)0;
        }
        (_values, _mask, _flags, _start, Count, Capacity) = (values, mask, flags, 0, keep, capacity);
        _appended = keep;
    }

    /// <summary>Bytes of the packed form (<see cref="Pack"/>).</summary>
    public int PackedLength => PackedLengthOf(Count, Features);

    private static int PackedLengthOf(int steps, int features) => 4 + (steps * features * 4) + ((steps * features + 7) / 8) + steps;

    /// <summary>Packs the steps oldest first: u16 F, u16 n, n·F float32 values (little-endian), n·F mask bits, n flag bytes
    /// (migration 0008). Masks are 0/1 by the decoder's contract, so one bit each is exact.</summary>
    public void Pack(Span<byte> destination)
    {
        int f = Features, n = Count;
        BinaryPrimitives.WriteUInt16LittleEndian(destination, (ushort)f);
        BinaryPrimitives.WriteUInt16LittleEndian(destination[2..], (ushort)n);
        int position = 4;
        int bits = 4 + (n * f * 4);
        destination.Slice(bits, (n * f + 7) / 8).Clear();
        int flags = bits + ((n * f + 7) / 8);
        for (int i = 0; i < n; i++)
        {
            Step(n - i, out var values, out var mask);
            for (int j = 0; j < f; j++)
            {
                BinaryPrimitives.WriteSingleLittleEndian(destination[position..], values[j]);
                position += 4;
                int k = (i * f) + j;
                if (mask[j] != 0)
                    destination[bits + (k >> 3)] |= (byte)(1 << (k & 7));
            }
            destination[flags + i] = Flagged(n - i) ? (byte)1 : (byte)0;
        }
    }

    /// <summary>Replaces the steps with a packed state (the newest <see cref="Capacity"/> of them).</summary>
    /// <exception cref="FormatException">The state is not a packed history of <see cref="Features"/> features.</exception>
    public void Unpack(ReadOnlySpan<byte> state, long lastOffset)
    {
        if (state.Length < 4)
            throw new FormatException("window state shorter than its header");
        int f = BinaryPrimitives.ReadUInt16LittleEndian(state), n = BinaryPrimitives.ReadUInt16LittleEndian(state[2..]);
        if (f != Features || state.Length != PackedLengthOf(n, f))
            throw new FormatException($"window state of {f} features × {n} steps ({state.Length} bytes) does not fit {Features} features");
        int bits = 4 + (n * f * 4), flags = bits + ((n * f + 7) / 8);
        Count = 0;
        _start = 0;
        _appended = 0;
        var v = new float[f];
        var m = new float[f];
        for (int i = Math.Max(0, n - Capacity); i < n; i++)
        {
            for (int j = 0; j < f; j++)
            {
                v[j] = BinaryPrimitives.ReadSingleLittleEndian(state[(4 + (((i * f) + j) * 4))..]);
                int k = (i * f) + j;
                m[j] = (state[bits + (k >> 3)] >> (k & 7) & 1) != 0 ? 1f : 0f;
            }
            long appended = Append(v, m, lastOffset);
            SetFlag(appended, state[flags + i] != 0);
        }
        LastOffset = lastOffset;
    }
}
