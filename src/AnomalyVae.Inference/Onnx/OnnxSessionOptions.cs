namespace AnomalyVae.Inference;

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

    public Microsoft.ML.OnnxRuntime.GraphOptimizationLevel OptimizationLevel { get; init; } =
        Microsoft.ML.OnnxRuntime.GraphOptimizationLevel.ORT_ENABLE_ALL;

    /// <summary>
    /// CUDA device to run on, or null for CPU only. When CUDA cannot be used the session falls back to CPU and
    /// logs one warning; <see cref="OnnxSession.Provider"/> tells which one is in use.
    /// </summary>
    public int? CudaDeviceId { get; init; }
}
