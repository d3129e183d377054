using System.CommandLine;
using AnomalyVae.Model;
using AnomalyVae.Tools;

namespace AnomalyVae.UnitTests.Tools;

/// <summary>
/// <c>generate</c> run in-process: CSV output, labels side file, determinism, and one clear error per bad input.
/// (Kafka output is covered by the integration test of <c>SyntheticStreamProducer</c>, the code path it calls.)
/// </summary>
public sealed class GenerateCommandTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("anomalyvae-generate-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string PathOf(string name) => Path.Combine(_dir, name);

    /// <summary>Parses and runs the command; returns the exit code, or the exception a failure threw.</summary>
    private static async Task<(int ExitCode, Exception? Error)> Run(params string[] args)
    {
        // The command is internal to the tools assembly and is registered in its Program.cs;
        // its factory is reached by name so this test does not depend on that registration.
        var factory = Type.GetType("AnomalyVae.Tools.GenerateCommand, anomalyvae-tools", throwOnError: true)!.GetMethod("Create")!;
        var root = new RootCommand { (Command)factory.Invoke(null, null)! };
        var parse = root.Parse(args);
        if (parse.Errors.Count > 0)
            return (2, new ArgumentException(string.Join("; ", parse.Errors.Select(e => e.Message))));
        try
        {
            return (await parse.InvokeAsync(new InvocationConfiguration { EnableDefaultExceptionHandler = false }), null);
        }
        catch (Exception e)
        {
            return (1, e);
        }
    }

    [Theory]
    [InlineData("sensors")]
    [InlineData("transactions")]
    public async Task Csv_output_with_labels_is_reproducible_from_the_seed(string domain)
    {
        var first = await Run("generate", domain, "--count", "3000", "--seed", "7", "--anomaly-rate", "0.05", "--out", PathOf("a.csv"), "--labels", PathOf("a-labels.csv"));
        var second = await Run("generate", domain, "--count", "3000", "--seed", "7", "--anomaly-rate", "0.05", "--out", PathOf("b.csv"));
        var other = await Run("generate", domain, "--count", "3000", "--seed", "8", "--anomaly-rate", "0.05", "--out", PathOf("c.csv"));
        Assert.Equal((0, null), first);
        Assert.Equal((0, null), second);
        Assert.Equal((0, null), other);
        Assert.Equal(File.ReadAllBytes(PathOf("a.csv")), File.ReadAllBytes(PathOf("b.csv")));
        Assert.NotEqual(File.ReadAllBytes(PathOf("a.csv")), File.ReadAllBytes(PathOf("c.csv")));

        // The side file repeats the CSV's id and label columns, row for row.
        using var data = CsvReader.Open(PathOf("a.csv"));
        using var labels = CsvReader.Open(PathOf("a-labels.csv"));
        Assert.Equal(SyntheticStream.LabelsHeader, labels.Header);
        int rows = 0, anomalies = 0;
        while (data.ReadRecord())
        {
            Assert.True(labels.ReadRecord());
            Assert.Equal(data.GetString(0), labels.GetString(0));
            Assert.Equal(data.GetString(data.IndexOf("label")), labels.GetString(1));
            Assert.Equal(data.GetString(data.IndexOf("anomaly_kind")), labels.GetString(2));
            rows++;
            anomalies += labels.GetString(1) == "1" ? 1 : 0;
        }

        Assert.False(labels.ReadRecord());
        Assert.Equal(3000, rows);
        Assert.InRange(anomalies, 60, 300);
    }

    [Fact]
    public async Task Entity_count_and_duration_are_honoured()
    {
        Assert.Equal((0, null), await Run("generate", "sensors", "--duration", "0.2", "--count", "500", "--machines", "7", "--out", PathOf("s.csv")));
        using var reader = CsvReader.Open(PathOf("s.csv"));
        var machines = new HashSet<string>(StringComparer.Ordinal);
        var rows = 0;
        while (reader.ReadRecord())
        {
            machines.Add(reader.GetString(1));
            rows++;
        }

        Assert.Equal(500, rows); // 500 CSV rows take far less than the 0.2 s limit
        Assert.Equal(7, machines.Count);
    }

    [Theory]
    [InlineData("give exactly one destination", "generate", "sensors", "--count", "10")]
    [InlineData("give exactly one destination", "generate", "sensors", "--count", "10", "--out", "x.csv", "--topic", "t")]
    [InlineData("--count N or --duration S", "generate", "sensors", "--out", "x.csv")]
    [InlineData("--rate needs --count N or --duration S", "generate", "sensors", "--rate", "100/s", "--out", "x.csv")]
    [InlineData("--rate must be a positive number", "generate", "sensors", "--rate", "fast", "--count", "5", "--out", "x.csv")]
    [InlineData("--rate must be a positive number", "generate", "sensors", "--rate", "0/s", "--count", "5", "--out", "x.csv")]
    [InlineData("--count must be positive", "generate", "sensors", "--count", "0", "--out", "x.csv")]
    [InlineData("--duration must be a positive", "generate", "sensors", "--duration", "-1", "--out", "x.csv")]
    [InlineData("--anomaly-rate must be between 0 and 0.5", "generate", "transactions", "--count", "5", "--anomaly-rate", "0.9", "--out", "x.csv")]
    [InlineData("--accounts must be between 1", "generate", "transactions", "--count", "5", "--accounts", "0", "--out", "x.csv")]
    [InlineData("--kafka-property must be key=value", "generate", "sensors", "--count", "5", "--topic", "t", "--kafka-property", "linger.ms")]
    [InlineData("--labels must be a different file", "generate", "sensors", "--count", "5", "--out", "x.csv", "--labels", "x.csv")]
    [InlineData("output directory", "generate", "sensors", "--count", "5", "--out", "/nonexistent-anomalyvae-dir/x.csv")]
    public async Task Bad_input_is_one_clear_user_error(string message, params string[] args)
    {
        var (exitCode, error) = await Run(args);
        Assert.Equal(1, exitCode);
        Assert.NotNull(error);
        Assert.Equal("CliException", error.GetType().Name);
        Assert.Contains(message, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Options_of_the_other_domain_are_usage_errors()
    {
        var (exitCode, error) = await Run("generate", "transactions", "--machines", "5", "--count", "5", "--out", "x.csv");
        Assert.Equal(2, exitCode);
        Assert.Contains("--machines", error!.Message, StringComparison.Ordinal);
    }
}
