using AnomalyVae.Inference;
using AnomalyVae.Model;
using AnomalyVae.Tests;
using AnomalyVae.Training;
using AnomalyVae.Training.Engine;
using AnomalyVae.Training.Export;

namespace AnomalyVae.UnitTests.Training;

/// <summary>The exported ONNX graph, run by ONNX Runtime, must reproduce the C# engine and carry everything needed.</summary>
public sealed class VaeOnnxExportTests : IDisposable
{
    private static readonly VaeTrainingOptions Quick = new() { Hidden = [24, 12], Latent = 3, Epochs = 4, BatchSize = 64, Threads = 1, Seed = 7 };
    private readonly string _directory = Directory.CreateTempSubdirectory("avae-export-").FullName;

    [Fact]
    public void OnnxRuntimeScoresMatchTheEngineOnMixedDataWithMissingAndOddValues()
    {
        var trained = TrainMixed(rows: 600);
        using var bundle = ModelBundle.Load(trained.ToOnnx(), "test");

        // Score fresh rows, including anomalies, an unseen category, an absurd magnitude and all-missing cells.
        string path = MixedData.WriteCsv(_directory, "score.csv", rows: 300, seed: 99, missingRate: 0.1, anomalyRate: 0.2);
        File.AppendAllText(path, "x1,1e30,-1e30,1e30,purple,true,1\nx2,,,,,,0\nx3,-0,0,0,red,false,0\n");
        var table = FeatureTable.Load(path, bundle.Schema);

        var onnx = bundle.Score(table, batchRows: 128);
        var values = table.StandardizedValues();
        var engineScores = new float[table.RowCount];
        var engineFeatures = new float[table.RowCount * table.FeatureCount];
        var engineLatent = new float[table.RowCount * trained.Result.Model.LatentSize];
        using (var scorer = new VaeScorer(trained.Result.Model))
            scorer.Score(values, table.Mask, engineScores, engineFeatures, engineLatent);

        AssertClose(engineScores, onnx.Scores, "score");
        AssertClose(engineFeatures, onnx.FeatureScores, "feature score");
        AssertClose(engineLatent, onnx.LatentMeans, "latent mean");
        Assert.All(onnx.Scores, s => Assert.True(float.IsFinite(s), $"score {s} is not finite"));
        // All-missing row: every feature score is 0 and so is the total.
        int empty = table.RowCount - 2;
        Assert.All(onnx.FeatureScores.AsSpan(empty * table.FeatureCount, table.FeatureCount).ToArray(), s => Assert.Equal(0f, s, 1e-5f));
    }

    [Fact]
    public void SameDataSeedAndThreadsGiveIdenticalBytes()
    {
        var first = Fixed(TrainMixed(rows: 400)).ToOnnx();
        var second = Fixed(TrainMixed(rows: 400)).ToOnnx();
        Assert.Equal(first, second);
        var otherSeed = Fixed(TrainMixed(rows: 400, Quick with { Seed = 8 })).ToOnnx();
        Assert.NotEqual(first, otherSeed);
    }

    [Fact]
    public void ModelFileReadsBackTheEngineModelSchemaAndCalibration()
    {
        var trained = TrainMixed(rows: 300);
        string path = Path.Combine(_directory, "model.onnx");
        trained.Save(path);

        var (model, schema, calibration, summary) = ModelFile.Read(path);
        Assert.Equal(trained.Schema.ToJson(), schema.ToJson());
        Assert.Equal(trained.Calibration.Threshold, calibration.Threshold);
        Assert.Equal(trained.Summary.Seed, summary!.Seed);
        Assert.Equal(trained.Result.Model.Noise, model.Noise);
        for (int i = 0; i < model.Decoder.Count; i++)
            Assert.Equal(trained.Result.Model.Decoder[i].Weights, model.Decoder[i].Weights);

        using var bundle = ModelBundle.Load(path);
        Assert.Equal(trained.Calibration.Threshold, bundle.Calibration.Threshold);
        Assert.Equal(5, bundle.Schema.Count);
        Assert.Matches("^[0-9]{8}-[0-9a-f]{12}$", bundle.Version);
    }

    [Fact]
    public void ForeignOrDamagedFilesAreRejectedWithTheirName()
    {
        string plain = Path.Combine(_directory, "plain.onnx");
        var g = new OnnxGraph("plain");
        g.OutputAs(g.Relu(g.Input("x", 2)), "y", 2);
        g.Save(plain);
        var foreign = Assert.Throws<ModelFormatException>(() => ModelBundle.Load(plain));
        Assert.Contains("not an AnomalyVae model", foreign.Message);

        string model = Path.Combine(_directory, "model.onnx");
        TrainMixed(rows: 200).Save(model);
        var bytes = File.ReadAllBytes(model);
        string truncated = Path.Combine(_directory, "truncated.onnx");
        File.WriteAllBytes(truncated, bytes[..(bytes.Length / 2)]);
        var damaged = Assert.Throws<ModelFormatException>(() => ModelBundle.Load(truncated));
        Assert.Contains("truncated.onnx", damaged.Message);
        Assert.Throws<ModelFormatException>(() => ModelFile.Read(truncated));
        Assert.Throws<ModelFormatException>(() => ModelBundle.Load(Path.Combine(_directory, "absent.onnx")));
    }

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    private TrainedModel TrainMixed(int rows, VaeTrainingOptions? options = null)
    {
        string path = MixedData.WriteCsv(_directory, $"train-{rows}.csv", rows, seed: 1);
        return Trainer.Train(path, FeatureSpec.Parse(MixedData.SpecJson), options ?? Quick);
    }

    private static TrainedModel Fixed(TrainedModel trained) =>
        trained with { Summary = trained.Summary with { CreatedAt = new DateTimeOffset(2026, 1, 2, 3, 4, 5, TimeSpan.Zero) } };

    private static void AssertClose(float[] expected, float[] actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            float tolerance = 1e-4f * Math.Max(1f, Math.Max(Math.Abs(expected[i]), Math.Abs(actual[i])));
            Assert.True(Math.Abs(expected[i] - actual[i]) <= tolerance, $"{what} {i}: engine {expected[i]}, ONNX Runtime {actual[i]}");
        }
    }
}
