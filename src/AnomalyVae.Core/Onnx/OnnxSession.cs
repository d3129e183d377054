using System.Buffers;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace AnomalyVae.Onnx;

/// <summary>
/// A loaded ONNX model (an <c>OrtSession</c>): its inputs, outputs and metadata, and two ways to run it —
/// <see cref="Run(ReadOnlySpan{FloatTensor})"/> for tests and tools, <see cref="Bind"/> for the scoring hot path.
/// </summary>
/// <remarks>
/// Thread-safety: ORT allows concurrent Run calls on one session, so <see cref="Run(ReadOnlySpan{FloatTensor})"/>
/// and <see cref="OnnxBinding.Run"/> on different bindings may be called from many threads at once. Disposing
/// the session while a run is in flight is safe: the native session is released when the last run returns.
/// </remarks>
public sealed unsafe class OnnxSession : IDisposable
{
    private const int OnnxTypeTensor = 1; // ONNX_TYPE_TENSOR

    private readonly OrtRuntime _runtime;
    private readonly OrtHandle _session;
    private readonly NativeUtf8Strings _inputNames;
    private readonly NativeUtf8Strings _outputNames;

    private OnnxSession(OrtRuntime runtime, OrtHandle session, ExecutionProvider provider, string source)
    {
        _runtime = runtime;
        _session = session;
        Provider = provider;
        Source = source;
        Inputs = ReadSignature(isInput: true);
        Outputs = ReadSignature(isInput: false);
        Metadata = ReadMetadata();
        _inputNames = new NativeUtf8Strings(Inputs.Select(i => i.Name).ToArray());
        _outputNames = new NativeUtf8Strings(Outputs.Select(o => o.Name).ToArray());
    }

    /// <summary>The provider the session actually runs on (CPU after a CUDA fallback).</summary>
    public ExecutionProvider Provider { get; }

    /// <summary>Where the model came from, for messages: a file path or "in-memory model (N bytes)".</summary>
    public string Source { get; }

    /// <summary>Model inputs in graph order.</summary>
    public IReadOnlyList<OnnxTensorInfo> Inputs { get; }

    /// <summary>Model outputs in graph order.</summary>
    public IReadOnlyList<OnnxTensorInfo> Outputs { get; }

    public ModelMetadata Metadata { get; }

    internal OrtRuntime Runtime => _runtime;

    /// <summary>Loads a model file.</summary>
    /// <exception cref="FileNotFoundException">No such file.</exception>
    /// <exception cref="InvalidDataException">The file is empty.</exception>
    /// <exception cref="OnnxRuntimeException">ORT rejected the model (corrupt, unsupported).</exception>
    public static OnnxSession FromFile(string path, OnnxSessionOptions? options = null, ILogger? logger = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"ONNX model file not found: {path}", path);
        }

        var fullPath = Path.GetFullPath(path);
        if (new FileInfo(fullPath).Length == 0)
        {
            throw new InvalidDataException($"ONNX model file {fullPath} is empty (0 bytes).");
        }

        options ??= new OnnxSessionOptions();
        var runtime = OnnxRuntime.Ensure(options.LibraryPath);
        var utf8Path = System.Text.Encoding.UTF8.GetBytes(fullPath + "\0");
        return Create(runtime, options, logger, $"ONNX model {fullPath}", (api, env, sessionOptions) =>
        {
            nint session;
            fixed (byte* pathPtr = utf8Path)
            {
                return (api.CreateSession(env, pathPtr, sessionOptions, &session), session);
            }
        });
    }

    /// <summary>Loads a model from its serialized bytes (ORT copies what it needs; the array may be reused).</summary>
    /// <exception cref="InvalidDataException"><paramref name="model"/> is empty.</exception>
    /// <exception cref="OnnxRuntimeException">ORT rejected the model (corrupt, unsupported).</exception>
    public static OnnxSession FromBytes(ReadOnlySpan<byte> model, OnnxSessionOptions? options = null, ILogger? logger = null)
    {
        if (model.IsEmpty)
        {
            throw new InvalidDataException("In-memory ONNX model is empty (0 bytes).");
        }

        options ??= new OnnxSessionOptions();
        var runtime = OnnxRuntime.Ensure(options.LibraryPath);
        var length = model.Length;
        fixed (byte* data = model)
        {
            var address = (nint)data;
            return Create(runtime, options, logger, $"in-memory ONNX model ({length} bytes)", (api, env, sessionOptions) =>
            {
                nint session;
                var status = api.CreateSessionFromArray(env, (void*)address, (nuint)length, sessionOptions, &session);
                return (status, session);
            });
        }
    }

    /// <summary>
    /// Runs the model on managed tensors and returns every output as a new managed tensor. Allocates per call;
    /// use <see cref="Bind"/> on hot paths.
    /// </summary>
    /// <param name="inputs">Exactly the model's inputs, by name, all float.</param>
    /// <exception cref="ArgumentException">Missing, unknown or misshapen inputs; the message shows both shapes.</exception>
    /// <exception cref="OnnxRuntimeException">ORT failed to run the model.</exception>
    public IReadOnlyList<FloatTensor> Run(params ReadOnlySpan<FloatTensor> inputs)
    {
        ObjectDisposedException.ThrowIf(_session.IsClosed, this);
        var ordered = OrderInputs(inputs);
        var api = _runtime.Api;
        var memoryInfo = _runtime.CpuMemoryInfo.DangerousGetHandle();
        var pins = new MemoryHandle[ordered.Length];
        var inputValues = new OrtHandle?[ordered.Length];
        var outputValues = new nint[Outputs.Count];
        try
        {
            var rawInputs = new nint[ordered.Length];
            for (var i = 0; i < ordered.Length; i++)
            {
                var tensor = ordered[i];
                pins[i] = tensor.Data.AsMemory().Pin();
                var shape = tensor.Shape.ToArray();
                nint value;
                fixed (long* shapePtr = shape)
                {
                    api.Check(
                        api.CreateTensorWithDataAsOrtValue(
                            memoryInfo, pins[i].Pointer, (nuint)tensor.Data.Length * sizeof(float), shapePtr, (nuint)shape.Length, (int)OnnxElementType.Float, &value),
                        $"Creating input tensor '{tensor.Name}' {OnnxTensorInfo.FormatShape(tensor.Shape)}");
                }

                inputValues[i] = OrtHandle.Own(value, api.ReleaseValue);
                rawInputs[i] = value;
            }

            // The name blocks belong to the session: keep them alive even if it is disposed during the run.
            var inputNamesAdded = false;
            var outputNamesAdded = false;
            try
            {
                _inputNames.DangerousAddRef(ref inputNamesAdded);
                _outputNames.DangerousAddRef(ref outputNamesAdded);
                fixed (nint* inputsPtr = rawInputs)
                fixed (nint* outputsPtr = outputValues)
                {
                    RunCore(_inputNames.Pointers, inputsPtr, (nuint)rawInputs.Length, _outputNames.Pointers, outputsPtr, (nuint)outputValues.Length);
                }
            }
            finally
            {
                if (inputNamesAdded)
                {
                    _inputNames.DangerousRelease();
                }

                if (outputNamesAdded)
                {
                    _outputNames.DangerousRelease();
                }
            }

            var results = new FloatTensor[outputValues.Length];
            for (var i = 0; i < outputValues.Length; i++)
            {
                using var output = OrtHandle.Own(outputValues[i], api.ReleaseValue);
                outputValues[i] = 0;
                results[i] = CopyOutput(Outputs[i].Name, output.DangerousGetHandle());
            }

            return results;
        }
        finally
        {
            foreach (var value in outputValues)
            {
                if (value != 0)
                {
                    api.ReleaseValue(value);
                }
            }

            foreach (var value in inputValues)
            {
                value?.Dispose();
            }

            foreach (var pin in pins)
            {
                pin.Dispose();
            }
        }
    }

    /// <summary>
    /// Binds caller-owned buffers to the model's inputs and chosen outputs for allocation-free batch scoring;
    /// see <see cref="OnnxBinding"/>. Every model input must be bound; outputs may be any non-empty subset.
    /// </summary>
    public OnnxBinding Bind(ReadOnlySpan<TensorBuffer> inputs, ReadOnlySpan<TensorBuffer> outputs)
    {
        ObjectDisposedException.ThrowIf(_session.IsClosed, this);
        return new OnnxBinding(this, inputs, outputs);
    }

    public void Dispose()
    {
        _session.Dispose();
        _inputNames.Dispose();
        _outputNames.Dispose();
    }

    public override string ToString() =>
        $"{Source} on {Provider}: ({string.Join(", ", Inputs)}) -> ({string.Join(", ", Outputs)})";

    /// <summary>Calls OrtApi::Run, keeping the native session alive for the duration even if disposed meanwhile.</summary>
    internal void RunCore(byte** inputNames, nint* inputs, nuint inputCount, byte** outputNames, nint* outputs, nuint outputCount)
    {
        var added = false;
        _session.DangerousAddRef(ref added);
        try
        {
            var status = _runtime.Api.Run(_session.DangerousGetHandle(), 0, inputNames, inputs, inputCount, outputNames, outputCount, outputs);
            if (status != 0)
            {
                throw _runtime.Api.TakeError(status, $"Running {Source}");
            }
        }
        finally
        {
            if (added)
            {
                _session.DangerousRelease();
            }
        }
    }

    private delegate (nint Status, nint Session) SessionFactory(OrtApi api, nint env, nint sessionOptions);

    private static OnnxSession Create(OrtRuntime runtime, OnnxSessionOptions options, ILogger? logger, string source, SessionFactory factory)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(options.IntraOpThreads, nameof(options.IntraOpThreads));
        if (!Enum.IsDefined(options.OptimizationLevel))
        {
            throw new ArgumentOutOfRangeException(nameof(options), options.OptimizationLevel, "Unknown graph optimization level.");
        }

        var api = runtime.Api;
        var env = runtime.Env.DangerousGetHandle();
        string? cudaFailure = null;
        if (options.CudaDeviceId is { } deviceId)
        {
            ArgumentOutOfRangeException.ThrowIfNegative(deviceId, nameof(options.CudaDeviceId));
            using var cudaOptions = CreateSessionOptions(api, options);
            var cuda = OrtCudaProviderOptions.ForDevice(deviceId);

            // ORT logs a missing CUDA library as an error of its own; hold that back, the warning below says it once.
            OnnxRuntime.BeginCapture();
            nint cudaSession = 0;
            try
            {
                var appendStatus = api.SessionOptionsAppendExecutionProvider_CUDA(cudaOptions.DangerousGetHandle(), &cuda);
                if (appendStatus != 0)
                {
                    cudaFailure = api.TakeError(appendStatus).OrtMessage;
                }
                else
                {
                    var (status, session) = factory(api, env, cudaOptions.DangerousGetHandle());
                    if (status == 0)
                    {
                        cudaSession = session;
                    }
                    else
                    {
                        // Also a corrupt model fails here; the CPU attempt below then reports that, without the warning.
                        cudaFailure = api.TakeError(status).OrtMessage;
                    }
                }
            }
            finally
            {
                var captured = OnnxRuntime.EndCapture();
                if (cudaFailure is null)
                {
                    foreach (var (level, message) in captured)
                    {
                        OnnxRuntime.Forward(level, message);
                    }
                }
            }

            if (cudaSession != 0)
            {
                return Wrap(runtime, cudaSession, ExecutionProvider.Cuda, source);
            }
        }

        // Fresh options: a failed CUDA append must not leave anything half-registered behind.
        using var cpuOptions = CreateSessionOptions(api, options);
        var (cpuStatus, cpuSession) = factory(api, env, cpuOptions.DangerousGetHandle());
        if (cpuStatus != 0)
        {
            throw api.TakeError(cpuStatus, $"Loading {source}");
        }

        var result = Wrap(runtime, cpuSession, ExecutionProvider.Cpu, source);
        if (cudaFailure is not null)
        {
            (logger ?? NullLogger.Instance).LogWarning(
                "CUDA execution provider (device {CudaDeviceId}) unavailable, running {ModelSource} on CPU: {Reason}",
                options.CudaDeviceId, source, OneLine(cudaFailure));
        }

        return result;
    }

    private static OnnxSession Wrap(OrtRuntime runtime, nint session, ExecutionProvider provider, string source)
    {
        var handle = OrtHandle.Own(session, runtime.Api.ReleaseSession);
        try
        {
            return new OnnxSession(runtime, handle, provider, source);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    private static OrtHandle CreateSessionOptions(OrtApi api, OnnxSessionOptions options)
    {
        nint raw;
        api.Check(api.CreateSessionOptions(&raw), "Creating session options");
        var handle = OrtHandle.Own(raw, api.ReleaseSessionOptions);
        try
        {
            api.Check(api.SetIntraOpNumThreads(raw, options.IntraOpThreads), "Setting intra-op threads");
            api.Check(api.SetSessionGraphOptimizationLevel(raw, (int)options.OptimizationLevel), "Setting the graph optimization level");
            return handle;
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    private FloatTensor[] OrderInputs(ReadOnlySpan<FloatTensor> given)
    {
        var ordered = new FloatTensor[Inputs.Count];
        foreach (var tensor in given)
        {
            ArgumentNullException.ThrowIfNull(tensor, nameof(given));
            var index = IndexOf(Inputs, tensor.Name);
            if (index < 0)
            {
                throw new ArgumentException($"'{tensor.Name}' is not an input of {Source}; its inputs are {string.Join(", ", Inputs)}.", nameof(given));
            }

            if (ordered[index] is not null)
            {
                throw new ArgumentException($"Input '{tensor.Name}' was given twice.", nameof(given));
            }

            CheckShape(Inputs[index], tensor.Shape);
            ordered[index] = tensor;
        }

        for (var i = 0; i < ordered.Length; i++)
        {
            if (ordered[i] is null)
            {
                throw new ArgumentException($"Input {Inputs[i]} of {Source} was not given.", nameof(given));
            }
        }

        return ordered;
    }

    internal static void CheckShape(OnnxTensorInfo expected, IReadOnlyList<long> actual)
    {
        if (expected.ElementType != OnnxElementType.Float)
        {
            throw new NotSupportedException($"Model input {expected} is not float; only float tensors are supported.");
        }

        var matches = expected.Shape.Count == actual.Count;
        for (var d = 0; matches && d < actual.Count; d++)
        {
            matches = expected.Shape[d] < 0 || expected.Shape[d] == actual[d];
        }

        if (!matches)
        {
            throw new ArgumentException(
                $"Input '{expected.Name}' has shape {OnnxTensorInfo.FormatShape(actual)} but the model expects {expected.ShapeText}.");
        }
    }

    internal static int IndexOf(IReadOnlyList<OnnxTensorInfo> infos, string name)
    {
        for (var i = 0; i < infos.Count; i++)
        {
            if (string.Equals(infos[i].Name, name, StringComparison.Ordinal))
            {
                return i;
            }
        }

        return -1;
    }

    private FloatTensor CopyOutput(string name, nint value)
    {
        var api = _runtime.Api;
        nint info;
        api.Check(api.GetTensorTypeAndShape(value, &info), $"Reading the shape of output '{name}'");
        using var infoHandle = OrtHandle.Own(info, api.ReleaseTensorTypeAndShapeInfo);
        int elementType;
        api.Check(api.GetTensorElementType(info, &elementType));
        if (elementType != (int)OnnxElementType.Float)
        {
            throw new NotSupportedException($"Output '{name}' is {(OnnxElementType)elementType}; only float outputs are supported.");
        }

        var shape = ReadDimensions(api, info);
        long count = 1;
        foreach (var dim in shape)
        {
            count *= dim;
        }

        var data = new float[count];
        if (count > 0)
        {
            void* source;
            api.Check(api.GetTensorMutableData(value, &source), $"Reading output '{name}'");
            new ReadOnlySpan<float>(source, (int)count).CopyTo(data);
        }

        return new FloatTensor(name, data, shape);
    }

    private static long[] ReadDimensions(OrtApi api, nint tensorInfo)
    {
        nuint rank;
        api.Check(api.GetDimensionsCount(tensorInfo, &rank));
        var dims = new long[(int)rank];
        fixed (long* dimsPtr = dims)
        {
            api.Check(api.GetDimensions(tensorInfo, dimsPtr, rank));
        }

        return dims;
    }

    /// <summary>Reads input or output names and types from the native session (internal: leak tests repeat it).</summary>
    internal OnnxTensorInfo[] ReadSignature(bool isInput)
    {
        var api = _runtime.Api;
        var session = _session.DangerousGetHandle();
        nuint count;
        api.Check(isInput ? api.SessionGetInputCount(session, &count) : api.SessionGetOutputCount(session, &count));
        var result = new OnnxTensorInfo[(int)count];
        for (nuint i = 0; i < count; i++)
        {
            byte* namePtr;
            api.Check(isInput
                ? api.SessionGetInputName(session, i, _runtime.Allocator, &namePtr)
                : api.SessionGetOutputName(session, i, _runtime.Allocator, &namePtr));
            var name = api.TakeAllocatorString(_runtime.Allocator, namePtr);
            nint typeInfo;
            api.Check(isInput ? api.SessionGetInputTypeInfo(session, i, &typeInfo) : api.SessionGetOutputTypeInfo(session, i, &typeInfo));
            using var typeInfoHandle = OrtHandle.Own(typeInfo, api.ReleaseTypeInfo);
            result[(int)i] = ReadTensorInfo(api, name, typeInfo);
        }

        return result;
    }

    private static OnnxTensorInfo ReadTensorInfo(OrtApi api, string name, nint typeInfo)
    {
        int onnxType;
        api.Check(api.GetOnnxTypeFromTypeInfo(typeInfo, &onnxType));
        nint tensorInfo = 0;
        if (onnxType == OnnxTypeTensor)
        {
            api.Check(api.CastTypeInfoToTensorInfo(typeInfo, &tensorInfo));
        }

        if (tensorInfo == 0)
        {
            return new OnnxTensorInfo(name, OnnxElementType.Undefined, [], []);
        }

        // tensorInfo belongs to typeInfo: not released here.
        int elementType;
        api.Check(api.GetTensorElementType(tensorInfo, &elementType));
        var dims = ReadDimensions(api, tensorInfo);
        var symbols = new byte*[dims.Length];
        fixed (byte** symbolsPtr = symbols)
        {
            api.Check(api.GetSymbolicDimensions(tensorInfo, symbolsPtr, (nuint)dims.Length));
        }

        var names = new string[dims.Length];
        for (var d = 0; d < dims.Length; d++)
        {
            dims[d] = dims[d] < 0 ? -1 : dims[d];
            names[d] = symbols[d] == null ? "" : Marshal.PtrToStringUTF8((nint)symbols[d]) ?? "";
        }

        return new OnnxTensorInfo(name, (OnnxElementType)elementType, dims, names);
    }

    /// <summary>Reads the model metadata from the native session (internal: leak tests repeat it).</summary>
    internal ModelMetadata ReadMetadata()
    {
        var api = _runtime.Api;
        var allocator = _runtime.Allocator;
        nint created;
        api.Check(api.SessionGetModelMetadata(_session.DangerousGetHandle(), &created), "Reading model metadata");
        var metadata = created;
        using var metadataHandle = OrtHandle.Own(metadata, api.ReleaseModelMetadata);

        string Read(delegate* unmanaged<nint, nint, byte**, nint> getter)
        {
            byte* value;
            api.Check(getter(metadata, allocator, &value), "Reading model metadata");
            return api.TakeAllocatorString(allocator, value);
        }

        var producer = Read(api.ModelMetadataGetProducerName);
        var graphName = Read(api.ModelMetadataGetGraphName);
        var domain = Read(api.ModelMetadataGetDomain);
        var description = Read(api.ModelMetadataGetDescription);
        long version;
        api.Check(api.ModelMetadataGetVersion(metadata, &version));

        byte** keys;
        long keyCount;
        api.Check(api.ModelMetadataGetCustomMetadataMapKeys(metadata, allocator, &keys, &keyCount), "Reading model metadata keys");
        var custom = new Dictionary<string, string>(StringComparer.Ordinal);
        try
        {
            for (long k = 0; k < keyCount; k++)
            {
                byte* value;
                api.Check(api.ModelMetadataLookupCustomMetadataMap(metadata, allocator, keys[k], &value), "Reading model metadata");
                custom[Marshal.PtrToStringUTF8((nint)keys[k]) ?? ""] = api.TakeAllocatorString(allocator, value);
            }
        }
        finally
        {
            // The key strings and the array holding them were all allocated with the allocator.
            if (keys != null)
            {
                for (long k = 0; k < keyCount; k++)
                {
                    FreeQuietly(api, allocator, keys[k]);
                }

                FreeQuietly(api, allocator, keys);
            }
        }

        return new ModelMetadata(producer, graphName, domain, description, version, custom);
    }

    private static void FreeQuietly(OrtApi api, nint allocator, void* pointer)
    {
        var status = api.AllocatorFree(allocator, pointer);
        if (status != 0)
        {
            api.ReleaseStatus(status);
        }
    }

    private static string OneLine(string text) =>
        string.Join(' ', text.Split(['\r', '\n'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
}
