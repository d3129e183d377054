using System.Diagnostics;

namespace AnomalyVae.Tests;

/// <summary>Debian's python3-onnx checker as a child process (integration tests only).</summary>
internal static class OnnxChecker
{
    private const string DebianPython = "/usr/bin/python3";

    /// <summary>Runs Debian's onnx checker; a machine without it fails the test with the fix, never skips it.</summary>
    public static (int ExitCode, string Stdout, string Stderr) Run(string modelPath)
    {
        Assert.True(
            File.Exists(DebianPython),
            $"{DebianPython} is missing; the ONNX checker test needs Debian's python3 with python3-onnx (run deploy/local/setup.sh).");
        const string script =
            "import sys\n" +
            "try:\n" +
            "    import onnx\n" +
            "except ImportError as e:\n" +
            "    print('MISSING-ONNX', e); sys.exit(3)\n" +
            "m = onnx.load(sys.argv[1])\n" +
            "onnx.checker.check_model(m, full_check=True)\n" +
            "print('ok ir=%d opset=%d producer=%s' % (m.ir_version, m.opset_import[0].version, m.producer_name))\n";
        var start = new ProcessStartInfo(DebianPython)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add("-c");
        start.ArgumentList.Add(script);
        start.ArgumentList.Add(modelPath);
        using var process = Process.Start(start) ?? throw new InvalidOperationException($"Could not start {DebianPython}.");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromSeconds(60)))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail("The ONNX checker did not finish within 60 s.");
        }

        var output = stdout.GetAwaiter().GetResult();
        Assert.False(
            process.ExitCode == 3 && output.Contains("MISSING-ONNX", StringComparison.Ordinal),
            $"Debian's python3-onnx is not installed ({output.Trim()}); run deploy/local/setup.sh, which installs it (apt-get install python3-onnx).");
        return (process.ExitCode, output, stderr.GetAwaiter().GetResult());
    }
}
