using System.Buffers;

namespace AnomalyVae.Events;

/// <summary>
/// A batch of decoded events as the model's raw input: x and mask, each [Count, F] row-major, in pooled buffers
/// of <see cref="Capacity"/> rows. <see cref="EventDecoder.Decode(ReadOnlySpan{byte}, EventBatch)"/> appends one
/// row per decoded event; failed events leave no row, so row i is the i-th event that decoded. Reuse a batch
/// with <see cref="Clear"/>; <see cref="Dispose"/> returns the buffers to the pool. Not thread-safe.
/// </summary>
public sealed class EventBatch : IDisposable
{
    private float[]? _x;
    private float[]? _mask;

    /// <summary>Rents buffers for <paramref name="capacity"/> rows of <paramref name="featureCount"/> features.</summary>
    public EventBatch(int capacity, int featureCount)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(featureCount, 1);
        var length = checked(capacity * featureCount);
        Capacity = capacity;
        FeatureCount = featureCount;
        _x = ArrayPool<float>.Shared.Rent(length);
        _mask = ArrayPool<float>.Shared.Rent(length);
    }

    /// <summary>Most rows the batch holds.</summary>
    public int Capacity { get; }

    /// <summary>F, the width of a row.</summary>
    public int FeatureCount { get; }

    /// <summary>Rows decoded so far.</summary>
    public int Count { get; private set; }

    /// <summary>Whether no more rows fit.</summary>
    public bool IsFull => Count == Capacity;

    /// <summary>x of the decoded rows, [Count, F] row-major.</summary>
    public ReadOnlySpan<float> X => XBuffer.AsSpan(0, Count * FeatureCount);

    /// <summary>mask of the decoded rows, [Count, F] row-major (1 = present, 0 = missing).</summary>
    public ReadOnlySpan<float> Mask => MaskBuffer.AsSpan(0, Count * FeatureCount);

    /// <summary>x of the decoded rows as memory (for APIs that pin or hold on to the buffer while scoring).</summary>
    public ReadOnlyMemory<float> XMemory => XBuffer.AsMemory(0, Count * FeatureCount);

    /// <summary>mask of the decoded rows as memory.</summary>
    public ReadOnlyMemory<float> MaskMemory => MaskBuffer.AsMemory(0, Count * FeatureCount);

    private float[] XBuffer => _x ?? throw new ObjectDisposedException(nameof(EventBatch));

    private float[] MaskBuffer => _mask ?? throw new ObjectDisposedException(nameof(EventBatch));

    /// <summary>x of row <paramref name="row"/> (length F).</summary>
    public ReadOnlySpan<float> RowX(int row) => Row(XBuffer, row);

    /// <summary>mask of row <paramref name="row"/> (length F).</summary>
    public ReadOnlySpan<float> RowMask(int row) => Row(MaskBuffer, row);

    /// <summary>Empties the batch for reuse (the buffers are kept).</summary>
    public void Clear() => Count = 0;

    /// <summary>Returns the buffers to the pool; the batch cannot be used afterwards.</summary>
    public void Dispose()
    {
        if (_x is not null)
            ArrayPool<float>.Shared.Return(_x);
        if (_mask is not null)
            ArrayPool<float>.Shared.Return(_mask);
        _x = null;
        _mask = null;
        Count = 0;
    }

    internal Span<float> NextRowX() => NextRow(XBuffer);

    internal Span<float> NextRowMask() => NextRow(MaskBuffer);

    internal void CommitRow()
    {
        if (IsFull)
            throw new InvalidOperationException("the batch is full");
        Count++;
    }

    private ReadOnlySpan<float> Row(float[] buffer, int row)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(row);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(row, Count);
        return buffer.AsSpan(row * FeatureCount, FeatureCount);
    }

    private Span<float> NextRow(float[] buffer)
    {
        if (IsFull)
            throw new InvalidOperationException($"the batch is full ({Capacity} rows): score it and Clear it before decoding more events");
        return buffer.AsSpan(Count * FeatureCount, FeatureCount);
    }
}
