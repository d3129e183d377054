using System.Reflection;
using AnomalyVae.Inference;

namespace AnomalyVae.Streaming;

/// <summary>What this process runs: the product version and the native runtimes it loaded (logged at start-up,
/// exported as anomalyvae_build_info, printed by <c>anomalyvae version</c>).</summary>
public sealed record BuildInfo(string Version, string OnnxRuntime, string Librdkafka)
{
    private static readonly Lazy<BuildInfo> Loaded = new(() => new BuildInfo(
        typeof(BuildInfo).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0] ?? "0.0.0",
        Inference.OnnxRuntime.Version,
        Streaming.Librdkafka.VersionString));

    /// <summary>Loads both runtimes on first use; throws if librdkafka is older than Confluent.Kafka needs.</summary>
    public static BuildInfo Current => Loaded.Value;

    public override string ToString() => $"AnomalyVae {Version} (ONNX Runtime {OnnxRuntime}, librdkafka {Librdkafka})";
}
