using System.Globalization;
using AnomalyVae.Model;
using AnomalyVae.Tests;

namespace AnomalyVae.IntegrationTests.Cli;

/// <summary>The CLI as a user meets it: exit codes, one-line errors, and the outputs of every command.</summary>
public sealed class CliTests : IClassFixture<CliTests.TrainedCli>
{
    private readonly TrainedCli _cli;

    public CliTests(TrainedCli cli) => _cli = cli;

    private string Dir => _cli.Directory;

    [Theory]
    [InlineData(new string[0], "Required command")]
    [InlineData(new[] { "frobnicate" }, "frobnicate")]
    [InlineData(new[] { "train", "--data", "x.csv" }, "--out")]
    [InlineData(new[] { "score", "--model", "m.onnx", "--data", "d.csv", "--out", "o.csv", "--top", "many" }, "many")]
    public void BadArgumentsGiveOneErrorLineAndUsageExitCode(string[] args, string mentioned)
    {
        var result = CliProcess.Run(Dir, args);
        Assert.True(result.ExitCode == 2, result.ToString());
        var lines = result.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.StartsWith("anomalyvae: error:", lines[0]);
        Assert.Contains(mentioned, lines[0], StringComparison.OrdinalIgnoreCase);
        Assert.True(lines.Length <= 2, result.ToString());
    }

    [Theory]
    [InlineData("train")]
    [InlineData("score")]
    [InlineData("evaluate")]
    [InlineData("sample")]
    [InlineData("encode")]
    [InlineData("interpolate")]
    public void EveryCommandHasHelp(string command)
    {
        var result = CliProcess.Run(Dir, command, "--help");
        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Contains("--model", result.Stdout.Replace("--data", "--model", StringComparison.Ordinal));
    }

    [Fact]
    public void MissingDataFileIsOneClearError()
    {
        var result = CliProcess.Run(Dir, "train", "--data", "nope.csv", "--out", "m.onnx");
        Assert.Equal(1, result.ExitCode);
        Assert.Equal("anomalyvae: error: data file 'nope.csv' does not exist.", result.Stderr.Trim());
    }

    [Fact]
    public void RaggedCsvNamesTheLine()
    {
        string path = Path.Combine(Dir, "ragged.csv");
        File.WriteAllText(path, "a,b\n1,2\n3,4\n5\n");
        var result = CliProcess.Run(Dir, "train", "--data", path, "--out", Path.Combine(Dir, "ragged.onnx"));
        Assert.Equal(1, result.ExitCode);
        Assert.Contains("line 4", result.Stderr);
        Assert.Single(result.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries), l => l.StartsWith("anomalyvae: error:", StringComparison.Ordinal));
    }

    [Fact]
    public void SpecThatDoesNotMatchTheDataNamesTheColumn()
    {
        string spec = Path.Combine(Dir, "wrong-spec.json");
        File.WriteAllText(spec, """{"features":[{"name":"a","kind":"numeric"},{"name":"pressure","kind":"numeric"}]}""");
        var result = CliProcess.Run(Dir, "train", "--data", _cli.TrainCsv, "--spec", spec, "--out", Path.Combine(Dir, "w.onnx"));
        Assert.Equal(1, result.ExitCode);
        Assert.Contains("pressure", result.Stderr);
    }

    [Fact]
    public void AFileThatIsNotAModelIsRejected()
    {
        string notModel = Path.Combine(Dir, "not-a-model.onnx");
        File.WriteAllText(notModel, "this is not protobuf");
        var result = CliProcess.Run(Dir, "score", "--model", notModel, "--data", _cli.TestCsv, "--out", Path.Combine(Dir, "x.csv"));
        Assert.Equal(1, result.ExitCode);
        Assert.Contains("not-a-model.onnx", result.Stderr);
        Assert.StartsWith("anomalyvae: error:", result.Stderr);
    }

    [Fact]
    public void ScoreWritesOneRowPerInputInOrderWithPValuesAndTopFeatures()
    {
        string output = Path.Combine(Dir, "scores.csv");
        var result = CliProcess.Run(Dir, "score", "--model", _cli.Model, "--data", _cli.TestCsv, "--out", output, "--keep", "id,label", "--top", "2");
        Assert.True(result.ExitCode == 0, result.ToString());
        using var reader = CsvReader.Open(output);
        Assert.Equal(["row", "id", "label", "score", "p_value", "flagged", "top1_feature", "top1_score", "top2_feature", "top2_score"], reader.Header);
        using var input = CsvReader.Open(_cli.TestCsv);
        int rows = 0;
        string[] features = ["a", "b", "c", "color", "flag"];
        while (reader.ReadRecord())
        {
            Assert.True(input.ReadRecord());
            rows++;
            Assert.Equal(input.GetString(0), reader.GetString(1)); // same order
            double p = double.Parse(reader[4], CultureInfo.InvariantCulture);
            Assert.InRange(p, 0, 1);
            Assert.Contains(reader.GetString(6), features);
            Assert.True(double.Parse(reader[7], CultureInfo.InvariantCulture) >= double.Parse(reader[9], CultureInfo.InvariantCulture));
        }
        Assert.False(input.ReadRecord());
        Assert.Equal(400, rows);
    }

    [Fact]
    public void EvaluateReportsQualityOnLabelledData()
    {
        var result = CliProcess.Run(Dir, "evaluate", "--model", _cli.Model, "--data", _cli.TestCsv, "--label-column", "label", "--format", "json");
        Assert.True(result.ExitCode == 0, result.ToString());
        using var json = System.Text.Json.JsonDocument.Parse(result.Stdout);
        double auroc = json.RootElement.GetProperty("auroc").GetDouble();
        // Anomalies break strong correlations; even a briefly trained model separates them well.
        Assert.True(auroc > 0.8, $"AUROC {auroc}");
        Assert.Equal(400, json.RootElement.GetProperty("rows").GetInt32());
    }

    [Fact]
    public void SampleWritesSyntheticRowsInOriginalUnitsAndLabels()
    {
        string output = Path.Combine(Dir, "synth.csv");
        var result = CliProcess.Run(Dir, "sample", "--model", _cli.Model, "--n", "500", "--out", output, "--seed", "3");
        Assert.True(result.ExitCode == 0, result.ToString());
        using var reader = CsvReader.Open(output);
        Assert.Equal(["a", "b", "c", "color", "flag"], reader.Header);
        int rows = 0;
        double sumA = 0, sumAB = 0, sumAA = 0;
        var cs = new List<double>();
        while (reader.ReadRecord())
        {
            rows++;
            double a = double.Parse(reader[0], CultureInfo.InvariantCulture), b = double.Parse(reader[1], CultureInfo.InvariantCulture);
            sumA += a;
            sumAB += a * b;
            sumAA += a * a;
            cs.Add(double.Parse(reader[2], CultureInfo.InvariantCulture));
            Assert.Contains(reader.GetString(3), new[] { "red", "green", "blue", "black", FeatureSchema.UnknownCategory });
            Assert.Contains(reader.GetString(4), new[] { "0", "1" });
        }
        Assert.Equal(500, rows);
        Assert.True(sumAB > 0.5 * sumAA, "b ≈ 2a in the data: the generator must keep a positive relation");
        // c = exp(1 + 0.5a + noise) in the data, median e ≈ 2.7: samples come back through the inverse log transform.
        cs.Sort();
        Assert.InRange(cs[cs.Count / 2], 1.3, 5.5);
    }

    [Fact]
    public void EncodeAndInterpolateWriteLatentAndDecodedRows()
    {
        string latent = Path.Combine(Dir, "latent.csv");
        var encoded = CliProcess.Run(Dir, "encode", "--model", _cli.Model, "--data", _cli.TestCsv, "--out", latent);
        Assert.True(encoded.ExitCode == 0, encoded.ToString());
        Assert.Equal(401, File.ReadAllLines(latent).Length);
        Assert.Equal("row,z0,z1,z2", File.ReadLines(latent).First());

        string path = Path.Combine(Dir, "path.csv");
        var walked = CliProcess.Run(Dir, "interpolate", "--model", _cli.Model, "--data", _cli.TestCsv, "--from", "1", "--to", "2", "--steps", "5", "--out", path);
        Assert.True(walked.ExitCode == 0, walked.ToString());
        var lines = File.ReadAllLines(path);
        Assert.Equal(6, lines.Length);
        Assert.StartsWith("step,t,a,b,c,color,flag", lines[0]);
        Assert.StartsWith("4,1,", lines[5]);
    }

    [Fact]
    public void TrainWritesTheReportAndIsByteIdenticalForTheSameSeed()
    {
        Assert.Contains("<svg", File.ReadAllText(_cli.Report));
        Assert.Contains("threshold", File.ReadAllText(_cli.Report));
        string again = Path.Combine(Dir, "again.onnx");
        var result = CliProcess.Run(Dir, TrainedCli.Environment, [.. TrainedCli.TrainArgs(_cli.TrainCsv, again)]);
        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Contains(", ensemble of 2", result.Stdout); // the default model holds two VAEs
        Assert.Contains("(members ", result.Stdout);
        Assert.Equal(File.ReadAllBytes(_cli.Model), File.ReadAllBytes(again));

        string single = Path.Combine(Dir, "single.onnx");
        var one = CliProcess.Run(Dir, TrainedCli.Environment, [.. TrainedCli.TrainArgs(_cli.TrainCsv, single), "--ensemble", "1"]);
        Assert.True(one.ExitCode == 0, one.ToString());
        Assert.DoesNotContain("ensemble", one.Stdout);
        Assert.True(new FileInfo(single).Length < new FileInfo(again).Length, "one VAE should make a smaller file than two");
        Assert.Equal(1, CliProcess.Run(Dir, TrainedCli.Environment, [.. TrainedCli.TrainArgs(_cli.TrainCsv, single), "--ensemble", "17"]).ExitCode);
    }

    [Fact]
    public void OptInElboAndQuantileMapsTrainScoreAndSampleInOriginalUnits()
    {
        string model = Path.Combine(Dir, "elbo-maps.onnx");
        var trained = CliProcess.Run(Dir, TrainedCli.Environment, [.. TrainedCli.TrainArgs(_cli.TrainCsv, model), "--ensemble", "1", "--score", "elbo", "--quantile-map"]);
        Assert.True(trained.ExitCode == 0, trained.ToString());
        Assert.Contains("3 quantile-mapped", trained.Stdout); // the three numeric columns a, b, c
        Assert.Contains(", score -ELBO", trained.Stdout);
        var file = AnomalyVae.Training.Export.ModelFile.Read(model);
        Assert.Equal(AnomalyVae.Training.Engine.ScoreFunction.NegativeElbo, file.Model.ScoreFunction);
        Assert.Equal(3, file.Schema.Features.Count(f => f.QuantileMap is not null));

        // The −ELBO model still separates the test file's anomalies and calibrates its p-values.
        var scored = CliProcess.Run(Dir, "evaluate", "--model", model, "--data", _cli.TestCsv, "--label-column", "label", "--format", "json");
        Assert.True(scored.ExitCode == 0, scored.ToString());
        using var json = System.Text.Json.JsonDocument.Parse(scored.Stdout);
        Assert.InRange(json.RootElement.GetProperty("auroc").GetDouble(), 0.8, 1.0);

        // Samples come back through the inverse of the blended map: c keeps its log-normal median (≈ e).
        string output = Path.Combine(Dir, "elbo-synth.csv");
        var sampled = CliProcess.Run(Dir, "sample", "--model", model, "--n", "500", "--out", output, "--seed", "3");
        Assert.True(sampled.ExitCode == 0, sampled.ToString());
        var cs = File.ReadLines(output).Skip(1).Select(l => double.Parse(l.Split(',')[2], CultureInfo.InvariantCulture)).Order().ToArray();
        Assert.InRange(cs[cs.Length / 2], 1.3, 5.5);

        var unknown = CliProcess.Run(Dir, "train", "--data", _cli.TrainCsv, "--out", model, "--score", "likelihood");
        Assert.Equal(2, unknown.ExitCode); // a usage error
        Assert.Contains("likelihood", unknown.Stderr);
    }

    [Fact]
    public void FreshTrainerProcessesIdleAndUnderLoadWriteByteIdenticalModels()
    {
        // One in-process repeat missed a worker-team race that changed about one model file in 25 (more under load
        // and on a cold JIT); every fresh process has its own JIT timing. Six runs one at a time, then three rounds
        // of three at once on the test machine's cores, each compared byte for byte with the shared model.
        var expected = File.ReadAllBytes(_cli.Model);
        var differing = new List<string>();
        void TrainAndCompare(string name)
        {
            string path = Path.Combine(Dir, name);
            var result = CliProcess.Run(Dir, TrainedCli.Environment, [.. TrainedCli.TrainArgs(_cli.TrainCsv, path)]);
            Assert.True(result.ExitCode == 0, result.ToString());
            if (!File.ReadAllBytes(path).AsSpan().SequenceEqual(expected))
            {
                lock (differing)
                    differing.Add(name);
            }
        }

        for (int i = 0; i < 6; i++)
            TrainAndCompare($"idle-{i}.onnx");
        for (int round = 0; round < 3; round++)
            Parallel.For(0, 3, i => TrainAndCompare($"load-{round}-{i}.onnx"));
        Assert.Empty(differing);
    }

    /// <summary>One model trained through the CLI, shared by the tests above.</summary>
    [Fact]
    public void WindowedModelTrainsScoresEvaluatesAndEncodesFromCsv()
    {
        // Twelve machines, rows shuffled: the CLI orders each machine's rows by ts and answers in input order.
        var random = new Random(4);
        var lines = new List<string>();
        for (int t = 0; t < 120; t++)
        {
            for (int m = 0; m < 12; m++)
            {
                double load = 50 + 30 * Math.Sin(2 * Math.PI * (t + 5 * m) / 24) + random.NextDouble();
                int label = m == 2 && t is >= 60 and < 66 ? 1 : 0;
                double temperature = label == 1 ? 5 : 20 + 0.3 * load;
                string faultKind = label == 1 ? "cold" : "";
                lines.Add(string.Create(CultureInfo.InvariantCulture, $"e{t}-{m},m{m},2024-01-01T{t / 60:00}:{t % 60:00}:{m:00}Z,{load:F2},{temperature:F2},{label},{faultKind}"));
            }
        }
        string data = Path.Combine(Dir, "fleet.csv");
        File.WriteAllText(data, "event_id,machine_id,ts,load,temperature,label,anomaly_kind\n" + string.Join('\n', lines.OrderBy(_ => random.Next())) + "\n");

        var inferred = CliProcess.Run(Dir, "spec", "infer", "--data", data);
        Assert.True(inferred.ExitCode == 0, inferred.ToString());
        Assert.Contains("--entity-column machine_id --order-column ts", inferred.Stderr);

        string model = Path.Combine(Dir, "windowed.onnx");
        var trained = CliProcess.Run(Dir, "train", "--data", data, "--out", model, "--entity-column", "machine_id", "--order-column", "ts",
            "--window", "4", "--epochs", "5", "--threads", "1");
        Assert.True(trained.ExitCode == 0, trained.ToString());
        Assert.Contains("window     4 events per 'machine_id', ordered by 'ts'", trained.Stdout);
        Assert.Contains("features   2 ", trained.Stdout); // load and temperature; never the entity or the time

        string scores = Path.Combine(Dir, "windowed-scores.csv");
        var scored = CliProcess.Run(Dir, "score", "--model", model, "--data", data, "--out", scores, "--keep", "event_id");
        Assert.True(scored.ExitCode == 0, scored.ToString());
        var rows = File.ReadAllLines(scores)[1..].Select(l => l.Split(',')).ToArray();
        Assert.Equal(lines.Count, rows.Length);
        var inputIds = File.ReadAllLines(data)[1..].Select(l => l.Split(',')[0]);
        Assert.Equal(inputIds, rows.Select(r => r[1])); // input order

        var evaluated = CliProcess.Run(Dir, "evaluate", "--model", model, "--data", data, "--format", "json", "--kind-column", "anomaly_kind");
        Assert.True(evaluated.ExitCode == 0, evaluated.ToString());
        using var json = System.Text.Json.JsonDocument.Parse(evaluated.Stdout);
        Assert.Equal(6, json.RootElement.GetProperty("anomalies").GetInt32());
        var kind = Assert.Single(json.RootElement.GetProperty("kinds").EnumerateArray());
        Assert.Equal("cold", kind.GetProperty("kind").GetString());
        Assert.Equal(6, kind.GetProperty("injected").GetInt32());
        Assert.InRange(kind.GetProperty("caught").GetInt32(), 0, 6);
        Assert.Contains("kind        cold ", CliProcess.Run(Dir, "evaluate", "--model", model, "--data", data, "--kind-column", "anomaly_kind").Stdout);
        Assert.InRange(json.RootElement.GetProperty("auroc").GetDouble(), 0.8, 1.0);

        var encoded = CliProcess.Run(Dir, "encode", "--model", model, "--data", data, "--out", Path.Combine(Dir, "windowed-latent.csv"));
        Assert.True(encoded.ExitCode == 0, encoded.ToString());
        var sampled = CliProcess.Run(Dir, "sample", "--model", model, "--n", "5", "--out", Path.Combine(Dir, "windowed-sample.csv"));
        Assert.Equal(1, sampled.ExitCode);
        Assert.Contains("windowed model", sampled.Stderr);

        var noEntity = CliProcess.Run(Dir, "train", "--data", data, "--out", model, "--window", "4");
        Assert.Equal(1, noEntity.ExitCode);
        Assert.Contains("--entity-column", noEntity.Stderr);

        // Windowed models train one VAE; asking for more says so instead of silently training one.
        var windowedEnsemble = CliProcess.Run(Dir, "train", "--data", data, "--out", model, "--entity-column", "machine_id", "--ensemble", "2");
        Assert.Equal(1, windowedEnsemble.ExitCode);
        Assert.Contains("windowed models train one VAE", windowedEnsemble.Stderr);
        var windowedElbo = CliProcess.Run(Dir, "train", "--data", data, "--out", model, "--entity-column", "machine_id", "--score", "elbo");
        Assert.Equal(1, windowedElbo.ExitCode);
        Assert.Contains("windowed models score the reconstruction probability", windowedElbo.Stderr);
    }

    public sealed class TrainedCli : IDisposable
    {
        public static readonly Dictionary<string, string> Environment = new() { ["SOURCE_DATE_EPOCH"] = "1767225600" };

        public TrainedCli()
        {
            Directory = System.IO.Directory.CreateTempSubdirectory("avae-cli-").FullName;
            TrainCsv = MixedData.WriteCsv(Directory, "train.csv", rows: 1500, seed: 11);
            TestCsv = MixedData.WriteCsv(Directory, "test.csv", rows: 400, seed: 12, anomalyRate: 0.1);
            Model = Path.Combine(Directory, "model.onnx");
            Report = Path.Combine(Directory, "report.html");
            var result = CliProcess.Run(Directory, Environment, [.. TrainArgs(TrainCsv, Model), "--report", Report]);
            Assert.True(result.ExitCode == 0, result.ToString());
        }

        public string Directory { get; }

        public string TrainCsv { get; }

        public string TestCsv { get; }

        public string Model { get; }

        public string Report { get; }

        public static string[] TrainArgs(string data, string model) =>
            ["train", "--data", data, "--out", model, "--epochs", "12", "--hidden", "32,16", "--latent", "3", "--threads", "2", "--seed", "5"];

        public void Dispose() => System.IO.Directory.Delete(Directory, recursive: true);
    }
}
