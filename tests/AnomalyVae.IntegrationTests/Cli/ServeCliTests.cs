using AnomalyVae.Tests;

namespace AnomalyVae.IntegrationTests.Cli;

/// <summary><c>serve</c> and <c>db migrate</c> refuse bad set-ups with one error line and exit code 1, before
/// connecting anywhere (no Kafka or PostgreSQL needed here).</summary>
public sealed class ServeCliTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("serve-cli-").FullName;

    private string Config(string json)
    {
        var path = Path.Combine(_directory, $"config-{Guid.NewGuid():N}.json");
        File.WriteAllText(path, json);
        return path;
    }

    private const string Valid = """
        {"Postgres": {"ConnectionString": "Host=127.0.0.1;Port=1;Username=x"},
         "Detectors": [{"Name": "sensors", "Topic": "sensors", "Model": "MODEL"}], "Http": {"Port": 0}}
        """;

    [Fact]
    public void Serve_with_an_unloadable_model_names_detector_and_file()
    {
        var model = Path.Combine(_directory, "broken.onnx");
        File.WriteAllBytes(model, [0x08, 0x07, 0xFF, 0x00]);
        var result = CliProcess.Run(_directory, "serve", "--config", Config(Valid.Replace("MODEL", model, StringComparison.Ordinal)));
        Assert.True(result.ExitCode == 1, result.ToString());
        var line = Assert.Single(result.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries), l => l.StartsWith("anomalyvae: error:", StringComparison.Ordinal));
        Assert.Contains("Detector 'sensors'", line, StringComparison.Ordinal);
        Assert.Contains(model, line, StringComparison.Ordinal);
    }

    [Fact]
    public void Serve_reports_configuration_problems_including_command_line_overrides()
    {
        var result = CliProcess.Run(_directory, "serve", "--config", Config(Valid), "--Scoring:BatchSize=0", "--Detectors:0:Topic=");
        Assert.True(result.ExitCode == 1, result.ToString());
        Assert.Contains("Scoring:BatchSize is 0", result.Stderr, StringComparison.Ordinal);
        Assert.Contains("Detectors:0:Topic is empty", result.Stderr, StringComparison.Ordinal);

        var missing = CliProcess.Run(_directory, "serve", "--config", Path.Combine(_directory, "nope.json"));
        Assert.True(missing.ExitCode == 1, missing.ToString());
        Assert.Contains("nope.json' does not exist", missing.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void Db_migrate_needs_a_database()
    {
        var result = CliProcess.Run(_directory, "db", "migrate");
        Assert.True(result.ExitCode == 1, result.ToString());
        Assert.Contains("no database", result.Stderr, StringComparison.Ordinal);
    }

    public void Dispose() => Directory.Delete(_directory, recursive: true);
}
