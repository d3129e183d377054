using AnomalyVae.Model;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.ML.OnnxRuntime;

namespace AnomalyVae.Inference;

/// <summary>
/// A loaded ONNX model on ONNX Runtime's <see cref="InferenceSession"/>: its signature and metadata in our terms, the
/// CUDA-or-CPU choice, <see cref="Run(ReadOnlySpan{FloatTensor})"/> for tests and tools and <see cref="Bind"/> for the
/// hot path. Concurrent runs are allowed, and disposing during a run is safe: the session is released when the last
/// run returns (a model swap disposes the old model while a batch may still be scoring on it).
/// </summary>
public sealed class OnnxSession : IDisposable
{
    private readonly InferenceSession _session;
    private readonly RunOptions _runOptions = new();
    private readonly Lock _gate = new();
    private int _runs;
    private bool _disposed;
    private bool _released;

    private OnnxSession(InferenceSession session, ExecutionProvider provider, string source)
    {
        _session = session;
        Provider = provider;
        Source = source;
        Inputs = Signature(session.InputMetadata, session.InputNames);
        Outputs = Signature(session.OutputMetadata, session.OutputNames);
        var metadata = session.ModelMetadata;
        Metadata = new OnnxMetadata(metadata.ProducerName, metadata.GraphName, metadata.Domain, metadata.Description,
            metadata.Version, new Dictionary<string, string>(metadata.CustomMetadataMap, StringComparer.Ordinal));
    }

    /// <summary>The provider the session actually runs on (CPU after a CUDA fallback).</summary>
    public ExecutionProvider Provider { get; }

    /// <summary>Where the model came from, for messages: a file path or "in-memory model (N bytes)".</summary>
    public string Source { get; }

    /// <summary>Model inputs in graph order.</summary>
    public IReadOnlyList<OnnxTensorInfo> Inputs { get; }

    /// <summary>Model outputs in graph order.</summary>
    public IReadOnlyList<OnnxTensorInfo> Outputs { get; }

    public OnnxMetadata Metadata { get; }

    /// <summary>Loads a model file.</summary>
    /// <exception cref="FileNotFoundException">No such file.</exception>
    /// <exception cref="InvalidDataException">The file is empty.</exception>
    /// <exception cref="OnnxRuntimeException">ORT rejected the model (corrupt, unsupported).</exception>
    public static OnnxSession FromFile(string path, OnnxSessionOptions? options = null, ILogger? logger = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!File.Exists(path))
            throw new FileNotFoundException($"ONNX model file not found: {path}", path);
        var fullPath = Path.GetFullPath(path);
        if (new FileInfo(fullPath).Length == 0)
            throw new InvalidDataException($"ONNX model file {fullPath} is empty (0 bytes).");
        return Create(o => new InferenceSession(fullPath, o), options, logger, $"ONNX model {fullPath}");
    }

    /// <summary>Loads a model from its serialized bytes.</summary>
    /// <exception cref="InvalidDataException"><paramref name="model"/> is empty.</exception>
    /// <exception cref="OnnxRuntimeException">ORT rejected the model (corrupt, unsupported).</exception>
    public static OnnxSession FromBytes(ReadOnlySpan<byte> model, OnnxSessionOptions? options = null, ILogger? logger = null)
    {
        if (model.IsEmpty)
            throw new InvalidDataException("In-memory ONNX model is empty (0 bytes).");
        var bytes = model.ToArray();
        return Create(o => new InferenceSession(bytes, o), options, logger, $"in-memory ONNX model ({bytes.Length} bytes)");
    }

    /// <summary>
    /// Runs the model on managed tensors and returns every output as a new managed tensor. Allocates per call;
    /// use <see cref="Bind"/> on hot paths.
    /// </summary>
    /// <exception cref="ArgumentException">Missing, unknown or misshapen inputs; the message shows both shapes.</exception>
    public IReadOnlyList<FloatTensor> Run(params ReadOnlySpan<FloatTensor> inputs)
    {
        var ordered = OrderInputs(inputs);
        var values = new OrtValue[ordered.Length];
        try
        {
            for (int i = 0; i < ordered.Length; i++)
                values[i] = OrtValue.CreateTensorValueFromMemory(ordered[i].Data, [.. ordered[i].Shape]);
            using var lease = Lease();
            using var outputs = _session.Run(_runOptions, [.. Inputs.Select(i => i.Name)], values, [.. Outputs.Select(o => o.Name)]);
            var results = new FloatTensor[Outputs.Count];
            int k = 0;
            foreach (var output in outputs)
            {
                var info = output.GetTensorTypeAndShape();
                if (info.ElementDataType != Microsoft.ML.OnnxRuntime.Tensors.TensorElementType.Float)
                    throw new NotSupportedException($"Output '{Outputs[k].Name}' is {info.ElementDataType}; only float outputs are supported.");
                results[k] = new FloatTensor(Outputs[k].Name, output.GetTensorDataAsSpan<float>().ToArray(), info.Shape);
                k++;
            }
            return results;
        }
        finally
        {
            foreach (var value in values)
                value?.Dispose();
        }
    }

    /// <summary>
    /// Binds caller-owned buffers to the model's inputs and chosen outputs for allocation-free batch scoring;
    /// see <see cref="OnnxBinding"/>. Every model input must be bound; outputs may be any non-empty subset.
    /// </summary>
    public OnnxBinding Bind(ReadOnlySpan<TensorBuffer> inputs, ReadOnlySpan<TensorBuffer> outputs)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return new OnnxBinding(this, inputs, outputs);
    }

    public void Dispose()
    {
        lock (_gate)
        {
            _disposed = true;
            if (_runs > 0 || _released)
                return;
            _released = true;
        }
        Release();
    }

    public override string ToString() =>
        $"{Source} on {Provider}: ({string.Join(", ", Inputs)}) -> ({string.Join(", ", Outputs)})";

    /// <summary>Runs a bound batch (see <see cref="OnnxBinding"/>), the session kept alive meanwhile.</summary>
    internal void Run(OrtIoBinding binding)
    {
        using var lease = Lease();
        _session.RunWithBinding(_runOptions, binding);
    }

    /// <summary>Keeps the session alive until the returned lease is disposed; throws once the session is disposed.</summary>
    private RunLease Lease()
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            _runs++;
        }
        return new RunLease(this);
    }

    internal OrtIoBinding CreateIoBinding() => _session.CreateIoBinding();

    private void Release()
    {
        _session.Dispose();
        _runOptions.Dispose();
    }

    private readonly struct RunLease(OnnxSession session) : IDisposable
    {
        public void Dispose()
        {
            lock (session._gate)
            {
                if (--session._runs > 0 || !session._disposed || session._released)
                    return;
                session._released = true;
            }
            session.Release();
        }
    }

    private static OnnxSession Create(Func<SessionOptions, InferenceSession> load, OnnxSessionOptions? options, ILogger? logger, string source)
    {
        options ??= new OnnxSessionOptions();
        ArgumentOutOfRangeException.ThrowIfNegative(options.IntraOpThreads);
        if (!Enum.IsDefined(options.OptimizationLevel))
            throw new ArgumentOutOfRangeException(nameof(options), options.OptimizationLevel, "Unknown graph optimization level.");
        if (options.CudaDeviceId is < 0)
            throw new ArgumentOutOfRangeException(nameof(options), options.CudaDeviceId, "A CUDA device id is 0 or more.");
        _ = OnnxRuntime.Env; // the environment (and its log forwarding) before the first session

        string? cudaFailure = null;
        if (options.CudaDeviceId is { } device)
        {
            try
            {
                using var cudaOptions = SessionOptionsFor(options);
                cudaOptions.AppendExecutionProvider_CUDA(device);
                return new OnnxSession(load(cudaOptions), ExecutionProvider.Cuda, source);
            }
            catch (OnnxRuntimeException e)
            {
                // The provider did not load, or the session did not start on it; which one, the CPU try tells: a
                // model that fails there too is reported as the model's error, without a CUDA warning.
                cudaFailure = e.Message;
            }
        }

        // Fresh options: a failed CUDA append must not leave anything half-registered behind.
        using var cpuOptions = SessionOptionsFor(options);
        var session = new OnnxSession(load(cpuOptions), ExecutionProvider.Cpu, source);
        if (cudaFailure is not null)
        {
            (logger ?? NullLogger.Instance).LogWarning(
                "CUDA execution provider (device {CudaDeviceId}) unavailable, running {ModelSource} on CPU: {Reason}",
                options.CudaDeviceId, source, OneLine(cudaFailure));
        }
        return session;
    }

    private static SessionOptions SessionOptionsFor(OnnxSessionOptions options) => new()
    {
        IntraOpNumThreads = options.IntraOpThreads,
        GraphOptimizationLevel = options.OptimizationLevel,
        LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_WARNING,
    };

    private static string OneLine(string text) => string.Join(' ', text.Split(['\r', '\n'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));

    private static OnnxTensorInfo[] Signature(IReadOnlyDictionary<string, NodeMetadata> metadata, IReadOnlyList<string> names)
    {
        var result = new OnnxTensorInfo[names.Count];
        for (int i = 0; i < names.Count; i++)
        {
            var node = metadata[names[i]];
            var type = node.IsTensor ? (OnnxElementType)(int)node.ElementDataType : OnnxElementType.Undefined;
            var shape = node.IsTensor ? node.Dimensions.Select(d => (long)d).ToArray() : [];
            var symbolic = node.IsTensor ? node.SymbolicDimensions.Select(s => s ?? "").ToArray() : [];
            result[i] = new OnnxTensorInfo(names[i], type, shape, symbolic);
        }
        return result;
    }

    private FloatTensor[] OrderInputs(ReadOnlySpan<FloatTensor> given)
    {
        var ordered = new FloatTensor[Inputs.Count];
        foreach (var tensor in given)
        {
            ArgumentNullException.ThrowIfNull(tensor, nameof(given));
            var index = IndexOf(Inputs, tensor.Name);
            if (index < 0)
                throw new ArgumentException($"'{tensor.Name}' is not an input of {Source}; its inputs are {string.Join(", ", Inputs)}.", nameof(given));
            if (ordered[index] is not null)
                throw new ArgumentException($"Input '{tensor.Name}' was given twice.", nameof(given));
            CheckShape(Inputs[index], tensor.Shape);
            ordered[index] = tensor;
        }
        for (var i = 0; i < ordered.Length; i++)
        {
            if (ordered[i] is null)
                throw new ArgumentException($"Input {Inputs[i]} of {Source} was not given.", nameof(given));
        }
        return ordered;
    }

    internal static void CheckShape(OnnxTensorInfo expected, IReadOnlyList<long> actual)
    {
        if (expected.ElementType != OnnxElementType.Float)
            throw new NotSupportedException($"Model input {expected} is not float; only float tensors are supported.");
        var matches = expected.Shape.Count == actual.Count;
        for (var d = 0; matches && d < actual.Count; d++)
            matches = expected.Shape[d] < 0 || expected.Shape[d] == actual[d];
        if (!matches)
            throw new ArgumentException($"Input '{expected.Name}' has shape {OnnxTensorInfo.FormatShape(actual)} but the model expects {expected.ShapeText}.");
    }

    internal static int IndexOf(IReadOnlyList<OnnxTensorInfo> infos, string name)
    {
        for (var i = 0; i < infos.Count; i++)
        {
            if (string.Equals(infos[i].Name, name, StringComparison.Ordinal))
                return i;
        }
        return -1;
    }
}
