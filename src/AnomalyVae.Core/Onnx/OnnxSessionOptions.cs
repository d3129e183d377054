namespace AnomalyVae.Onnx;

/// <summary>ORT's graph optimization levels (<c>GraphOptimizationLevel</c>).</summary>
public enum GraphOptimizationLevel
{
    Disabled = 0,
    Basic = 1,
    Extended = 2,
    All = 99,
}

/// <summary>Where a session's nodes run first.</summary>
public enum ExecutionProvider
{
    Cpu,
    Cuda,
}

/// <summary>How to create an <see cref="OnnxSession"/>.</summary>
public sealed record OnnxSessionOptions
{
    /// <summary>Threads used inside one operator; 0 lets ORT choose (one per physical core).</summary>
    public int IntraOpThreads { get; init; }

    public GraphOptimizationLevel OptimizationLevel { get; init; } = GraphOptimizationLevel.All;

    /// <summary>
    /// CUDA device to run on, or null for CPU only. When CUDA cannot be used the session falls back to CPU and
    /// logs one warning; <see cref="OnnxSession.Provider"/> tells which one is in use.
    /// </summary>
    public int? CudaDeviceId { get; init; }

    /// <summary>The ONNX Runtime library (file or folder); null for the default resolution, see <see cref="OnnxRuntime"/>.</summary>
    public string? LibraryPath { get; init; }
}
