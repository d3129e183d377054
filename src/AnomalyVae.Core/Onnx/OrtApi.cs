using System.Runtime.InteropServices;

namespace AnomalyVae.Onnx;

/// <summary>
/// The slice of ONNX Runtime's C API (the <c>OrtApi</c> function table) that AnomalyVae uses, read by index.
/// </summary>
/// <remarks>
/// Indices are positions in <c>struct OrtApi</c> of include/onnxruntime/core/session/onnxruntime_c_api.h, checked
/// against the table <c>ort_api_1_to_N</c> in onnxruntime/core/session/onnxruntime_c_api.cc and its
/// <c>static_assert</c>s (ReleaseCustomOpDomain == 101, ReleaseModelMetadata == 118,
/// AddFreeDimensionOverrideByName == 124, ReleaseAvailableProviders == 126, SetGlobalSpinControl == 149,
/// ReleaseArenaCfg == 157). ORT only appends to the table, so an index never moves once shipped.
/// </remarks>
internal sealed unsafe class OrtApi
{
    /// <summary>
    /// The API version requested from <c>OrtApiBase::GetApi</c>: 6 is the first version whose table reaches
    /// SessionOptionsAppendExecutionProvider_CUDA (index 152), the newest entry used here. ORT 1.30 serves 1..its own.
    /// </summary>
    internal const uint Version = 6;

    internal readonly delegate* unmanaged<int, byte*, nint> CreateStatus;
    internal readonly delegate* unmanaged<nint, int> GetErrorCode;
    internal readonly delegate* unmanaged<nint, byte*> GetErrorMessage;
    internal readonly delegate* unmanaged<int, byte*, nint*, nint> CreateEnv;
    internal readonly delegate* unmanaged<delegate* unmanaged<nint, int, byte*, byte*, byte*, byte*, void>, nint, int, byte*, nint*, nint> CreateEnvWithCustomLogger;
    internal readonly delegate* unmanaged<nint, byte*, nint, nint*, nint> CreateSession;
    internal readonly delegate* unmanaged<nint, void*, nuint, nint, nint*, nint> CreateSessionFromArray;
    internal readonly delegate* unmanaged<nint, nint, byte**, nint*, nuint, byte**, nuint, nint*, nint> Run;
    internal readonly delegate* unmanaged<nint*, nint> CreateSessionOptions;
    internal readonly delegate* unmanaged<nint, int, nint> SetSessionGraphOptimizationLevel;
    internal readonly delegate* unmanaged<nint, int, nint> SetIntraOpNumThreads;
    internal readonly delegate* unmanaged<nint, int, nint> SetInterOpNumThreads;
    internal readonly delegate* unmanaged<nint, nuint*, nint> SessionGetInputCount;
    internal readonly delegate* unmanaged<nint, nuint*, nint> SessionGetOutputCount;
    internal readonly delegate* unmanaged<nint, nuint, nint*, nint> SessionGetInputTypeInfo;
    internal readonly delegate* unmanaged<nint, nuint, nint*, nint> SessionGetOutputTypeInfo;
    internal readonly delegate* unmanaged<nint, nuint, nint, byte**, nint> SessionGetInputName;
    internal readonly delegate* unmanaged<nint, nuint, nint, byte**, nint> SessionGetOutputName;
    internal readonly delegate* unmanaged<nint, void*, nuint, long*, nuint, int, nint*, nint> CreateTensorWithDataAsOrtValue;
    internal readonly delegate* unmanaged<nint, void**, nint> GetTensorMutableData;
    internal readonly delegate* unmanaged<nint, nint*, nint> CastTypeInfoToTensorInfo;
    internal readonly delegate* unmanaged<nint, int*, nint> GetOnnxTypeFromTypeInfo;
    internal readonly delegate* unmanaged<nint, int*, nint> GetTensorElementType;
    internal readonly delegate* unmanaged<nint, nuint*, nint> GetDimensionsCount;
    internal readonly delegate* unmanaged<nint, long*, nuint, nint> GetDimensions;
    internal readonly delegate* unmanaged<nint, byte**, nuint, nint> GetSymbolicDimensions;
    internal readonly delegate* unmanaged<nint, nint*, nint> GetTensorTypeAndShape;
    internal readonly delegate* unmanaged<int, int, nint*, nint> CreateCpuMemoryInfo;
    internal readonly delegate* unmanaged<nint, void*, nint> AllocatorFree;
    internal readonly delegate* unmanaged<nint*, nint> GetAllocatorWithDefaultOptions;
    internal readonly delegate* unmanaged<nint, void> ReleaseEnv;
    internal readonly delegate* unmanaged<nint, void> ReleaseStatus;
    internal readonly delegate* unmanaged<nint, void> ReleaseMemoryInfo;
    internal readonly delegate* unmanaged<nint, void> ReleaseSession;
    internal readonly delegate* unmanaged<nint, void> ReleaseValue;
    internal readonly delegate* unmanaged<nint, void> ReleaseTypeInfo;
    internal readonly delegate* unmanaged<nint, void> ReleaseTensorTypeAndShapeInfo;
    internal readonly delegate* unmanaged<nint, void> ReleaseSessionOptions;
    internal readonly delegate* unmanaged<nint, nint*, nint> SessionGetModelMetadata;
    internal readonly delegate* unmanaged<nint, nint, byte**, nint> ModelMetadataGetProducerName;
    internal readonly delegate* unmanaged<nint, nint, byte**, nint> ModelMetadataGetGraphName;
    internal readonly delegate* unmanaged<nint, nint, byte**, nint> ModelMetadataGetDomain;
    internal readonly delegate* unmanaged<nint, nint, byte**, nint> ModelMetadataGetDescription;
    internal readonly delegate* unmanaged<nint, nint, byte*, byte**, nint> ModelMetadataLookupCustomMetadataMap;
    internal readonly delegate* unmanaged<nint, long*, nint> ModelMetadataGetVersion;
    internal readonly delegate* unmanaged<nint, void> ReleaseModelMetadata;
    internal readonly delegate* unmanaged<nint, nint, byte***, long*, nint> ModelMetadataGetCustomMetadataMapKeys;
    internal readonly delegate* unmanaged<byte***, int*, nint> GetAvailableProviders;
    internal readonly delegate* unmanaged<byte**, int, nint> ReleaseAvailableProviders;
    internal readonly delegate* unmanaged<nint, OrtCudaProviderOptions*, nint> SessionOptionsAppendExecutionProvider_CUDA;

    internal OrtApi(nint* table)
    {
        CreateStatus = (delegate* unmanaged<int, byte*, nint>)table[0];
        GetErrorCode = (delegate* unmanaged<nint, int>)table[1];
        GetErrorMessage = (delegate* unmanaged<nint, byte*>)table[2];
        CreateEnv = (delegate* unmanaged<int, byte*, nint*, nint>)table[3];
        CreateEnvWithCustomLogger = (delegate* unmanaged<delegate* unmanaged<nint, int, byte*, byte*, byte*, byte*, void>, nint, int, byte*, nint*, nint>)table[4];
        CreateSession = (delegate* unmanaged<nint, byte*, nint, nint*, nint>)table[7];
        CreateSessionFromArray = (delegate* unmanaged<nint, void*, nuint, nint, nint*, nint>)table[8];
        Run = (delegate* unmanaged<nint, nint, byte**, nint*, nuint, byte**, nuint, nint*, nint>)table[9];
        CreateSessionOptions = (delegate* unmanaged<nint*, nint>)table[10];
        SetSessionGraphOptimizationLevel = (delegate* unmanaged<nint, int, nint>)table[23];
        SetIntraOpNumThreads = (delegate* unmanaged<nint, int, nint>)table[24];
        SetInterOpNumThreads = (delegate* unmanaged<nint, int, nint>)table[25];
        SessionGetInputCount = (delegate* unmanaged<nint, nuint*, nint>)table[30];
        SessionGetOutputCount = (delegate* unmanaged<nint, nuint*, nint>)table[31];
        SessionGetInputTypeInfo = (delegate* unmanaged<nint, nuint, nint*, nint>)table[33];
        SessionGetOutputTypeInfo = (delegate* unmanaged<nint, nuint, nint*, nint>)table[34];
        SessionGetInputName = (delegate* unmanaged<nint, nuint, nint, byte**, nint>)table[36];
        SessionGetOutputName = (delegate* unmanaged<nint, nuint, nint, byte**, nint>)table[37];
        CreateTensorWithDataAsOrtValue = (delegate* unmanaged<nint, void*, nuint, long*, nuint, int, nint*, nint>)table[49];
        GetTensorMutableData = (delegate* unmanaged<nint, void**, nint>)table[51];
        CastTypeInfoToTensorInfo = (delegate* unmanaged<nint, nint*, nint>)table[55];
        GetOnnxTypeFromTypeInfo = (delegate* unmanaged<nint, int*, nint>)table[56];
        GetTensorElementType = (delegate* unmanaged<nint, int*, nint>)table[60];
        GetDimensionsCount = (delegate* unmanaged<nint, nuint*, nint>)table[61];
        GetDimensions = (delegate* unmanaged<nint, long*, nuint, nint>)table[62];
        GetSymbolicDimensions = (delegate* unmanaged<nint, byte**, nuint, nint>)table[63];
        GetTensorTypeAndShape = (delegate* unmanaged<nint, nint*, nint>)table[65];
        CreateCpuMemoryInfo = (delegate* unmanaged<int, int, nint*, nint>)table[69];
        AllocatorFree = (delegate* unmanaged<nint, void*, nint>)table[76];
        GetAllocatorWithDefaultOptions = (delegate* unmanaged<nint*, nint>)table[78];
        ReleaseEnv = (delegate* unmanaged<nint, void>)table[92];
        ReleaseStatus = (delegate* unmanaged<nint, void>)table[93];
        ReleaseMemoryInfo = (delegate* unmanaged<nint, void>)table[94];
        ReleaseSession = (delegate* unmanaged<nint, void>)table[95];
        ReleaseValue = (delegate* unmanaged<nint, void>)table[96];
        ReleaseTypeInfo = (delegate* unmanaged<nint, void>)table[98];
        ReleaseTensorTypeAndShapeInfo = (delegate* unmanaged<nint, void>)table[99];
        ReleaseSessionOptions = (delegate* unmanaged<nint, void>)table[100];
        SessionGetModelMetadata = (delegate* unmanaged<nint, nint*, nint>)table[111];
        ModelMetadataGetProducerName = (delegate* unmanaged<nint, nint, byte**, nint>)table[112];
        ModelMetadataGetGraphName = (delegate* unmanaged<nint, nint, byte**, nint>)table[113];
        ModelMetadataGetDomain = (delegate* unmanaged<nint, nint, byte**, nint>)table[114];
        ModelMetadataGetDescription = (delegate* unmanaged<nint, nint, byte**, nint>)table[115];
        ModelMetadataLookupCustomMetadataMap = (delegate* unmanaged<nint, nint, byte*, byte**, nint>)table[116];
        ModelMetadataGetVersion = (delegate* unmanaged<nint, long*, nint>)table[117];
        ReleaseModelMetadata = (delegate* unmanaged<nint, void>)table[118];
        ModelMetadataGetCustomMetadataMapKeys = (delegate* unmanaged<nint, nint, byte***, long*, nint>)table[123];
        GetAvailableProviders = (delegate* unmanaged<byte***, int*, nint>)table[125];
        ReleaseAvailableProviders = (delegate* unmanaged<byte**, int, nint>)table[126];
        SessionOptionsAppendExecutionProvider_CUDA = (delegate* unmanaged<nint, OrtCudaProviderOptions*, nint>)table[152];
    }

    /// <summary>Throws the error carried by <paramref name="status"/> (and releases it); no-op for success (null).</summary>
    internal void Check(nint status, string? context = null)
    {
        if (status != 0)
        {
            throw TakeError(status, context);
        }
    }

    /// <summary>Converts a non-null OrtStatus into an exception and releases the status.</summary>
    internal OnnxRuntimeException TakeError(nint status, string? context = null)
    {
        int code;
        string message;
        try
        {
            code = GetErrorCode(status);
            message = Marshal.PtrToStringUTF8((nint)GetErrorMessage(status)) ?? "";
        }
        finally
        {
            ReleaseStatus(status);
        }

        return new OnnxRuntimeException((OrtErrorCode)code, message, context);
    }

    /// <summary>Copies a string that ORT allocated with <paramref name="allocator"/> and frees it there.</summary>
    internal string TakeAllocatorString(nint allocator, byte* value)
    {
        if (value == null)
        {
            return "";
        }

        try
        {
            return Marshal.PtrToStringUTF8((nint)value) ?? "";
        }
        finally
        {
            Check(AllocatorFree(allocator, value));
        }
    }
}

/// <summary>
/// The legacy <c>OrtCUDAProviderOptions</c> struct (x64 layout), including the three tunable-op fields that
/// newer ORT releases read; every field we leave unset carries the C++ constructor's default.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
internal struct OrtCudaProviderOptions
{
    internal int DeviceId;
    internal int CudnnConvAlgoSearch;
    internal nuint GpuMemLimit;
    internal int ArenaExtendStrategy;
    internal int DoCopyInDefaultStream;
    internal int HasUserComputeStream;
    internal nint UserComputeStream;
    internal nint DefaultMemoryArenaCfg;
    internal int TunableOpEnable;
    internal int TunableOpTuningEnable;
    internal int TunableOpMaxTuningDurationMs;

    internal static OrtCudaProviderOptions ForDevice(int deviceId) => new()
    {
        DeviceId = deviceId,
        CudnnConvAlgoSearch = 0, // exhaustive, ORT's default
        GpuMemLimit = nuint.MaxValue,
        DoCopyInDefaultStream = 1,
    };
}
