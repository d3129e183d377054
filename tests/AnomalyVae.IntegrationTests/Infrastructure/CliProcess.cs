using System.Diagnostics;

namespace AnomalyVae.IntegrationTests.Infrastructure;

/// <summary>What a run of the real <c>anomalyvae</c> command gave.</summary>
public sealed record CliResult(int ExitCode, string Stdout, string Stderr)
{
    public override string ToString() => $"exit {ExitCode}\nstdout:\n{Stdout}\nstderr:\n{Stderr}";
}

/// <summary>Runs the built <c>anomalyvae.dll</c> as a process, as a user would.</summary>
public static class CliProcess
{
    /// <summary>Runs <c>anomalyvae ARGS</c> and asserts its exit code. The environment's
    /// <c>Postgres__ConnectionString</c> is removed, so only the arguments configure the run.</summary>
    public static CliResult Run(int expectedExit, params string[] args)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "anomalyvae.dll"));
        foreach (var arg in args)
            start.ArgumentList.Add(arg);
        start.Environment.Remove("Postgres__ConnectionString");
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromMinutes(1)))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"anomalyvae {string.Join(' ', args)} did not finish within a minute");
        }
        process.WaitForExit();
        var result = new CliResult(process.ExitCode, stdout.Result, stderr.Result);
        Assert.True(result.ExitCode == expectedExit, $"anomalyvae {string.Join(' ', args)}: expected exit {expectedExit}\n{result}");
        return result;
    }
}
