using AnomalyVae.Onnx;

namespace AnomalyVae.UnitTests.Onnx;

public sealed class OnnxRuntimeTests
{
    [Fact]
    public void Loaded_library_reports_its_version_and_the_cpu_provider()
    {
        OnnxRuntime.Load();

        // GetVersionString (OrtApiBase) and GetAvailableProviders/ReleaseAvailableProviders (indices 125, 126).
        Assert.Matches(@"^1\.\d+\.\d+", OnnxRuntime.Version);
        Assert.True(File.Exists(OnnxRuntime.LibraryPath), OnnxRuntime.LibraryPath);
        Assert.Contains("CPUExecutionProvider", OnnxRuntime.AvailableProviders());
    }

    [Fact]
    public void Loading_the_same_library_again_is_a_no_op()
    {
        var path = OnnxRuntime.LibraryPath;

        OnnxRuntime.Load(path);
        OnnxRuntime.Load(Path.GetDirectoryName(path)); // the folder form resolves to the same file

        Assert.Equal(path, OnnxRuntime.LibraryPath);
    }

    [Fact]
    public void Missing_library_path_names_the_path_and_the_setup_script()
    {
        var missing = Path.Combine(Path.GetTempPath(), $"anomalyvae-no-ort-{Guid.NewGuid():N}", "libonnxruntime.so.1");

        var error = Assert.Throws<DllNotFoundException>(() => OnnxRuntime.Load(missing));

        Assert.Contains(missing, error.Message);
        Assert.Contains("deploy/local/setup.sh", error.Message);
        Assert.Contains(OnnxRuntime.LibraryPathVariable, error.Message);
    }

    [Fact]
    public void Session_with_a_missing_library_path_fails_the_same_way()
    {
        var missing = Path.Combine(Path.GetTempPath(), $"anomalyvae-no-ort-{Guid.NewGuid():N}.so");
        var model = TestModels.Dense([1f], [0f], 1, 1);

        var error = Assert.Throws<DllNotFoundException>(() => OnnxSession.FromBytes(model, new OnnxSessionOptions { LibraryPath = missing }));

        Assert.Contains(missing, error.Message);
        Assert.Contains("deploy/local/setup.sh", error.Message);
    }

    [Fact]
    public void A_different_library_file_cannot_be_loaded_into_the_same_process()
    {
        var other = Path.Combine(Path.GetTempPath(), $"anomalyvae-other-{Guid.NewGuid():N}.so");
        File.WriteAllBytes(other, [0x7f, (byte)'E', (byte)'L', (byte)'F']);
        try
        {
            OnnxRuntime.Load();

            var error = Assert.Throws<InvalidOperationException>(() => OnnxRuntime.Load(other));

            Assert.Contains(OnnxRuntime.LibraryPath, error.Message);
            Assert.Contains(other, error.Message);
        }
        finally
        {
            File.Delete(other);
        }
    }

    [Fact]
    public void Explicit_path_wins_and_does_not_fall_back()
    {
        var candidates = OnnxRuntime.Candidates("/opt/ort/libonnxruntime.so.1", Environment(("ANOMALYVAE_ONNXRUNTIME", "/env/lib.so")), "/home/u");

        var only = Assert.Single(candidates);
        Assert.Equal("/opt/ort/libonnxruntime.so.1", only.Path);
        Assert.False(only.ByName);
    }

    [Fact]
    public void Environment_variable_comes_next_and_does_not_fall_back()
    {
        var candidates = OnnxRuntime.Candidates(null, Environment(("ANOMALYVAE_ONNXRUNTIME", "/env/lib.so"), ("ANOMALYVAE_CACHE", "/cache")), "/home/u");

        Assert.Equal("/env/lib.so", Assert.Single(candidates).Path);
    }

    [Fact]
    public void Cache_variable_then_system_library_are_the_defaults()
    {
        var candidates = OnnxRuntime.Candidates(null, Environment(("ANOMALYVAE_CACHE", "/cache")), "/home/u");

        Assert.Equal(["/cache/onnxruntime/libonnxruntime.so.1", "libonnxruntime.so.1"], candidates.Select(c => c.Path));
        Assert.Equal([false, true], candidates.Select(c => c.ByName));
    }

    [Fact]
    public void Home_cache_is_used_when_no_cache_variable_is_set()
    {
        var candidates = OnnxRuntime.Candidates(null, Environment(), "/home/u");

        Assert.Equal("/home/u/.cache/anomalyvae/onnxruntime/libonnxruntime.so.1", candidates[0].Path);
        Assert.Equal("libonnxruntime.so.1", candidates[1].Path);
    }

    [Fact]
    public void A_folder_path_means_the_library_inside_it()
    {
        var folder = Path.GetDirectoryName(OnnxRuntime.LibraryPath)!;

        var candidate = Assert.Single(OnnxRuntime.Candidates(folder, Environment(), "/home/u"));

        Assert.Equal(Path.Combine(folder, OnnxRuntime.LibraryFileName), candidate.Path);
    }

    private static Func<string, string?> Environment(params (string Name, string Value)[] variables) =>
        name => variables.FirstOrDefault(v => v.Name == name).Value;
}
