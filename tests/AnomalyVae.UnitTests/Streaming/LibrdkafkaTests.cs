using AnomalyVae.Inference;
using AnomalyVae.Streaming;

namespace AnomalyVae.UnitTests.Streaming;

public sealed class LibrdkafkaTests
{
    [Fact]
    public void The_redist_build_is_loaded_not_a_system_librdkafka()
    {
        Assert.Equal(new Version(2, 16, 0), Librdkafka.Required);
        Assert.StartsWith("2.16.", Librdkafka.VersionString, StringComparison.Ordinal);
        var maps = File.ReadAllText("/proc/self/maps");
        Assert.Contains(Librdkafka.FileName, maps, StringComparison.Ordinal);
        Assert.DoesNotContain("/usr/lib/x86_64-linux-gnu/librdkafka.so", maps, StringComparison.Ordinal);
    }

    [Fact]
    public void An_older_librdkafka_fails_with_both_versions_named()
    {
        var error = Assert.Throws<InvalidOperationException>(() => Librdkafka.CheckVersion(0x020002ff, "2.0.2"));

        Assert.Contains("librdkafka 2.0.2 is loaded", error.Message, StringComparison.Ordinal);
        Assert.Contains("2.16.0", error.Message, StringComparison.Ordinal);
        Librdkafka.CheckVersion(0x021000ff, "2.16.0");
        Librdkafka.CheckVersion(0x021100ff, "2.17.0");
    }

    [Fact]
    public void Build_info_names_both_runtimes()
    {
        var build = BuildInfo.Current;

        Assert.StartsWith("1.32.", build.OnnxRuntime, StringComparison.Ordinal);
        Assert.StartsWith("2.16.", build.Librdkafka, StringComparison.Ordinal);
        Assert.Contains("ONNX Runtime 1.32", build.ToString(), StringComparison.Ordinal);
    }
}
