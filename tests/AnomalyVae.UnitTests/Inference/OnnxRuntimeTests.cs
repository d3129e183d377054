using AnomalyVae.Inference;

namespace AnomalyVae.UnitTests.Inference;

public sealed class OnnxRuntimeTests
{
    [Fact]
    public void The_package_runtime_reports_version_1_32()
    {
        Assert.StartsWith("1.32.", OnnxRuntime.Version, StringComparison.Ordinal);
    }

    [Fact]
    public void No_windows_natives_in_the_linux_build_output()
    {
        var root = AppContext.BaseDirectory;
        Assert.True(File.Exists(Path.Combine(root, "libonnxruntime.so")), "ONNX Runtime's Linux library is next to the assembly");
        Assert.DoesNotContain(Directory.EnumerateFiles(root, "*.dll", SearchOption.AllDirectories),
            f => Path.GetFileName(f).StartsWith("onnxruntime", StringComparison.OrdinalIgnoreCase) || f.Contains("librdkafka", StringComparison.Ordinal));
    }
}
