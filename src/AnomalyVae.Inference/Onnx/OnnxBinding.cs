using AnomalyVae.Model;
using Microsoft.ML.OnnxRuntime;

namespace AnomalyVae.Inference;

/// <summary>A caller-owned float buffer for one named model input or output, laid out row-major.</summary>
/// <param name="Name">The model input or output name.</param>
/// <param name="Memory">Room for at least one row; its length divided by the row width bounds the batch size.</param>
public readonly record struct TensorBuffer(string Name, Memory<float> Memory);

/// <summary>
/// Caller-owned buffers bound to a session for batch-after-batch scoring without per-call allocations: per batch
/// size, one <see cref="OrtIoBinding"/> over <see cref="OrtValue"/> views of the caller's memory, created on first
/// use and reused (inputs are read from, outputs written straight into, the caller's buffers). A batch of
/// <c>rows</c> rows uses the first <c>rows × row width</c> floats of each buffer. Not thread-safe: one binding per
/// scoring thread; the session may serve many bindings at once.
/// </summary>
public sealed class OnnxBinding : IDisposable
{
    private readonly OnnxSession _session;
    private readonly string[] _names; // inputs, then outputs
    private readonly Memory<float>[] _memory;
    private readonly long[][] _shapes; // per tensor; element 0 (the batch dimension) rewritten per batch size
    private readonly int[] _rowWidths;
    private readonly int _inputCount;
    private readonly int? _fixedRows;
    private readonly Dictionary<int, BatchValues> _byRows = [];
    private bool _disposed;

    internal OnnxBinding(OnnxSession session, ReadOnlySpan<TensorBuffer> inputs, ReadOnlySpan<TensorBuffer> outputs)
    {
        _session = session;
        var inputInfos = Resolve(session.Inputs, inputs, "input", requireAll: true);
        var outputInfos = Resolve(session.Outputs, outputs, "output", requireAll: false);
        if (outputs.Length == 0)
        {
            throw new ArgumentException($"Bind at least one output of {session.Source}; its outputs are {string.Join(", ", session.Outputs)}.", nameof(outputs));
        }

        _inputCount = inputs.Length;
        var count = inputs.Length + outputs.Length;
        _memory = new Memory<float>[count];
        _shapes = new long[count][];
        _rowWidths = new int[count];
        var maxRows = int.MaxValue;
        for (var j = 0; j < count; j++)
        {
            var (buffer, info) = j < _inputCount ? (inputs[j], inputInfos[j]) : (outputs[j - _inputCount], outputInfos[j - _inputCount]);
            if (info.ElementType != OnnxElementType.Float)
            {
                throw new NotSupportedException($"{info} is not float; only float tensors can be bound.");
            }

            if (info.Shape.Count == 0 || info.ElementsPerRow is not { } width || width <= 0 || width > int.MaxValue)
            {
                throw new NotSupportedException(
                    $"{info} cannot be bound: binding needs a leading batch dimension and fixed, non-zero sizes for the others.");
            }

            if (info.Shape[0] >= 0)
            {
                _fixedRows ??= (int)info.Shape[0];
            }

            _memory[j] = buffer.Memory;
            _shapes[j] = info.Shape.ToArray();
            _rowWidths[j] = (int)width;
            var capacity = buffer.Memory.Length / (int)width;
            if (capacity < 1)
            {
                throw new ArgumentException($"The buffer for {info} holds {buffer.Memory.Length} floats, less than one row of {width}.");
            }

            maxRows = Math.Min(maxRows, capacity);
        }

        if (_fixedRows is { } fixedRows && fixedRows > maxRows)
        {
            throw new ArgumentException($"The model's batch size is fixed at {fixedRows} rows but the buffers hold only {maxRows}.");
        }

        MaxRows = _fixedRows ?? maxRows;
        _names = [.. inputInfos.Select(i => i.Name), .. outputInfos.Select(o => o.Name)];
    }

    /// <summary>The largest batch the buffers can hold (or the model's fixed batch size).</summary>
    public int MaxRows { get; }

    /// <summary>Number of bound inputs (in the order given to <see cref="OnnxSession.Bind"/>).</summary>
    public int InputCount => _inputCount;

    /// <summary>Number of bound outputs (in the order given to <see cref="OnnxSession.Bind"/>).</summary>
    public int OutputCount => _memory.Length - _inputCount;

    /// <summary>The first <paramref name="rows"/> rows of input <paramref name="index"/>'s buffer, to fill before <see cref="Run"/>.</summary>
    public Span<float> Input(int index, int rows)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(index, _inputCount);
        CheckRows(rows);
        return _memory[index].Span[..(rows * _rowWidths[index])];
    }

    /// <summary>The first <paramref name="rows"/> rows of output <paramref name="index"/>'s buffer, valid after <see cref="Run"/>.</summary>
    public ReadOnlySpan<float> Output(int index, int rows)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(index, OutputCount);
        CheckRows(rows);
        var j = _inputCount + index;
        return _memory[j].Span[..(rows * _rowWidths[j])];
    }

    /// <summary>Row width (elements per row) of input <paramref name="index"/>.</summary>
    public int InputRowWidth(int index) => _rowWidths[index];

    /// <summary>Row width (elements per row) of output <paramref name="index"/>.</summary>
    public int OutputRowWidth(int index) => _rowWidths[_inputCount + index];

    /// <summary>
    /// Scores the first <paramref name="rows"/> rows of the input buffers into the output buffers. No managed
    /// allocation after the first call for a given batch size.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="rows"/> outside 1..<see cref="MaxRows"/>.</exception>
    /// <exception cref="OnnxRuntimeException">ORT failed to run the model.</exception>
    public void Run(int rows)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        CheckRows(rows);
        if (!_byRows.TryGetValue(rows, out var values))
        {
            values = CreateValues(rows);
            _byRows[rows] = values;
        }

        _session.Run(values.Binding);
    }

    public void Dispose()
    {
        if (_disposed)
            return;
        _disposed = true;
        foreach (var values in _byRows.Values)
            values.Dispose();
    }

    private void CheckRows(int rows)
    {
        if (rows < 1 || rows > MaxRows || (_fixedRows is { } fixedRows && rows != fixedRows))
        {
            throw new ArgumentOutOfRangeException(
                nameof(rows), rows, _fixedRows is null ? $"A batch must have 1..{MaxRows} rows." : $"The model's batch size is fixed at {_fixedRows} rows.");
        }
    }

    private BatchValues CreateValues(int rows)
    {
        var values = new BatchValues(_session.CreateIoBinding(), _memory.Length);
        try
        {
            for (var j = 0; j < _memory.Length; j++)
            {
                var shape = (long[])_shapes[j].Clone();
                shape[0] = rows;
                var value = OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, _memory[j][..(rows * _rowWidths[j])], shape);
                values.Values[j] = value;
                if (j < _inputCount)
                    values.Binding.BindInput(_names[j], value);
                else
                    values.Binding.BindOutput(_names[j], value);
            }
            return values;
        }
        catch
        {
            values.Dispose();
            throw;
        }
    }

    private static OnnxTensorInfo[] Resolve(IReadOnlyList<OnnxTensorInfo> declared, ReadOnlySpan<TensorBuffer> buffers, string kind, bool requireAll)
    {
        var result = new OnnxTensorInfo[buffers.Length];
        var seen = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < buffers.Length; i++)
        {
            var name = buffers[i].Name ?? throw new ArgumentException($"A bound {kind} has no name.");
            var index = OnnxSession.IndexOf(declared, name);
            if (index < 0)
            {
                throw new ArgumentException($"'{name}' is not a model {kind}; the model's {kind}s are {string.Join(", ", declared)}.");
            }

            if (!seen.Add(name))
            {
                throw new ArgumentException($"The {kind} '{name}' is bound twice.");
            }

            result[i] = declared[index];
        }

        if (requireAll)
        {
            foreach (var info in declared)
            {
                if (!seen.Contains(info.Name))
                {
                    throw new ArgumentException($"The model {kind} {info} is not bound.");
                }
            }
        }

        return result;
    }

    /// <summary>One batch size's binding and the tensor views it binds.</summary>
    private sealed class BatchValues(OrtIoBinding binding, int count) : IDisposable
    {
        public OrtIoBinding Binding { get; } = binding;

        public OrtValue?[] Values { get; } = new OrtValue?[count];

        public void Dispose()
        {
            Binding.Dispose();
            foreach (var value in Values)
                value?.Dispose();
        }
    }
}
