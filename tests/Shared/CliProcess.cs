using System.Diagnostics;

namespace AnomalyVae.Tests;

/// <summary>What a run of a real program gave.</summary>
public sealed record CliResult(int ExitCode, string Stdout, string Stderr)
{
    public override string ToString() => $"exit {ExitCode}\nstdout:\n{Stdout}\nstderr:\n{Stderr}";
}

/// <summary>Runs the built <c>anomalyvae</c> (or <c>anomalyvae-tools</c>) program as a child process, as a user
/// would. The environment's <c>Postgres__ConnectionString</c> is removed, so only what the test gives configures it.</summary>
public static class CliProcess
{
    public const string Cli = "anomalyvae";
    public const string Tools = "anomalyvae-tools";

    public static CliResult Start(string program, string? workingDirectory, IReadOnlyDictionary<string, string>? environment, params string[] args)
    {
        string dll = Path.Combine(AppContext.BaseDirectory, program + ".dll");
        Assert.True(File.Exists(dll), $"{dll} is missing; the test project references the project that builds it.");
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        if (workingDirectory is not null)
            start.WorkingDirectory = workingDirectory;
        start.ArgumentList.Add(dll);
        foreach (var arg in args)
            start.ArgumentList.Add(arg);
        start.Environment.Remove("Postgres__ConnectionString");
        foreach (var (key, value) in environment ?? new Dictionary<string, string>())
            start.Environment[key] = value;
        using var process = Process.Start(start) ?? throw new InvalidOperationException("could not start dotnet");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromMinutes(3)))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"{program} {string.Join(' ', args)} did not finish within 3 minutes.");
        }
        process.WaitForExit();
        return new CliResult(process.ExitCode, stdout.Result, stderr.Result);
    }

    /// <summary>Runs <c>anomalyvae ARGS</c> in <paramref name="workingDirectory"/>.</summary>
    public static CliResult Run(string workingDirectory, IReadOnlyDictionary<string, string>? environment, params string[] args) =>
        Start(Cli, workingDirectory, environment, args);

    public static CliResult Run(string workingDirectory, params string[] args) => Start(Cli, workingDirectory, null, args);

    /// <summary>Runs <c>anomalyvae ARGS</c> and asserts its exit code.</summary>
    public static CliResult Run(int expectedExit, params string[] args)
    {
        var result = Start(Cli, null, null, args);
        Assert.True(result.ExitCode == expectedExit, $"anomalyvae {string.Join(' ', args)}: expected exit {expectedExit}\n{result}");
        return result;
    }
}
