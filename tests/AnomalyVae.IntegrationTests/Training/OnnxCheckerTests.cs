using System.Globalization;
using System.Text;
using AnomalyVae.Model;
using AnomalyVae.Tests;
using AnomalyVae.Training;
using AnomalyVae.Training.Engine;
using AnomalyVae.Training.Export;

namespace AnomalyVae.IntegrationTests.Training;

/// <summary>Debian's official ONNX checker (python3-onnx, full check) accepts what we write.</summary>
public sealed class OnnxCheckerTests : IDisposable
{
    private static readonly VaeTrainingOptions Quick = new() { Hidden = [16], Latent = 3, Epochs = 3, BatchSize = 64, Threads = 1, Seed = 7 };
    private readonly string _directory = Directory.CreateTempSubdirectory("avae-checker-").FullName;

    [Fact]
    public void A_builder_model_with_every_operator_passes()
    {
        string path = Path.Combine(_directory, "every-operator.onnx");
        OnnxOperatorGraph.EveryOperator().Save(path);
        var (exitCode, stdout, stderr) = OnnxChecker.Run(path);
        Assert.True(exitCode == 0, $"onnx.checker.check_model(full_check=True) rejected the model:\n{stderr}{stdout}");
        Assert.Contains("ok ir=8 opset=17 producer=AnomalyVae", stdout);
    }

    [Fact]
    public void An_exported_model_passes()
    {
        string path = Path.Combine(_directory, "model.onnx");
        Trainer.Train(MixedData.WriteCsv(_directory, "train.csv", rows: 300, seed: 1), FeatureSpec.Parse(MixedData.SpecJson), Quick).Save(path);
        Assert.Equal(2, ModelFile.Read(path).Members.Count); // the default model: an ensemble of two VAEs in one graph
        var (exitCode, stdout, stderr) = OnnxChecker.Run(path);
        Assert.True(exitCode == 0, $"onnx.checker rejected the exported model:\n{stderr}{stdout}");
        Assert.Contains("opset=17", stdout);
    }

    [Fact]
    public void A_windowed_model_passes()
    {
        var csv = new StringBuilder("machine,temperature,load\n");
        var random = new Random(2);
        for (int t = 0; t < 80; t++)
        {
            foreach (var machine in new[] { "m1", "m2", "m3" })
                csv.Append(CultureInfo.InvariantCulture, $"{machine},{20 + random.NextDouble():F3},{random.Next(0, 100)}\n");
        }
        string data = Path.Combine(_directory, "fleet.csv");
        File.WriteAllText(data, csv.ToString());
        string path = Path.Combine(_directory, "windowed.onnx");
        Trainer.TrainWindowed(data, null, "machine", null, steps: 4, Quick).Save(path);
        var (exitCode, stdout, stderr) = OnnxChecker.Run(path);
        Assert.True(exitCode == 0, $"onnx.checker rejected the windowed model:\n{stderr}{stdout}");
    }

    public void Dispose() => Directory.Delete(_directory, recursive: true);
}
