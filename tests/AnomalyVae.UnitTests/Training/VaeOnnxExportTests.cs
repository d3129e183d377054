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

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void OnnxRuntimeScoresMatchTheEngineOnMixedDataWithMissingAndOddValues(int ensemble)
    {
        var trained = TrainMixed(rows: 600, Quick with { Ensemble = ensemble });
        Assert.Equal(ensemble, trained.Models.Count);
        using var bundle = ModelBundle.Load(trained.ToOnnx(), "test");

        // Score fresh rows, including anomalies, an unseen category, an absurd magnitude and all-missing cells.
        string path = MixedData.WriteCsv(_directory, "score.csv", rows: 300, seed: 99, missingRate: 0.1, anomalyRate: 0.2);
        File.AppendAllText(path, "x1,1e30,-1e30,1e30,purple,true,1\nx2,,,,,,0\nx3,-0,0,0,red,false,0\n");
        var table = FeatureTable.Load(path, bundle.Schema);

        var onnx = bundle.Score(table, batchRows: 128);
        var values = table.StandardizedValues();
        var (engineScores, engineFeatures, engineLatent) = EngineScores(trained.Models, table);
        if (ensemble > 1)
        {
            // The members differ, so the combined score is not member 0's; it lies within log K of the best member's.
            var first = new float[table.RowCount];
            using (var scorer = new VaeScorer(trained.Result.Model))
                scorer.Score(values, table.Mask, first);
            Assert.Contains(first.Zip(engineScores), p => Math.Abs(p.First - p.Second) > 1e-3f);
            Assert.All(first.Zip(engineScores), p => Assert.True(p.Second <= p.First + MathF.Log(ensemble) + 1e-3f, $"{p.Second} above member 0's {p.First} + log K"));
        }

        AssertClose(engineScores, onnx.Scores, "score");
        AssertClose(engineFeatures, onnx.FeatureScores, "feature score");
        AssertClose(engineLatent, onnx.LatentMeans, "latent mean");
        Assert.All(onnx.Scores, s => Assert.True(float.IsFinite(s), $"score {s} is not finite"));
        // All-missing row: every feature score is 0 and so is the total.
        int empty = table.RowCount - 2;
        Assert.All(onnx.FeatureScores.AsSpan(empty * table.FeatureCount, table.FeatureCount).ToArray(), s => Assert.Equal(0f, s, 1e-5f));
    }

    [Fact]
    public void AnAllNumericGraphHasNoColumnGathersNorScalarAsinhAndStillMatchesTheEngine()
    {
        // Wide-tailed numeric columns (so every feature gets a tail squash), a few cells missing, extremes to score.
        var rng = new DeterministicRandom(5, 0xA5);
        string Row(double scale) => string.Join(",", Enumerable.Range(0, 6).Select(j =>
            rng.NextDouble() < 0.03 ? "" : (scale * (rng.NextDouble() - 0.5) / Math.Max(1e-3, rng.NextDouble()) + j).ToString("R", System.Globalization.CultureInfo.InvariantCulture)));
        string header = string.Join(",", Enumerable.Range(0, 6).Select(j => $"n{j}"));
        string trainPath = Path.Combine(_directory, "numeric-train.csv");
        File.WriteAllLines(trainPath, [header, .. Enumerable.Range(0, 400).Select(_ => Row(1))]);
        var trained = Trainer.Train(trainPath, null, Quick with { Ensemble = 2 });
        Assert.All(trained.Schema.Features, f => Assert.True(f.Kind == FeatureKind.Numeric && f.TailScale > 0, $"{f.Name}: {f.Kind}, tail {f.TailScale}"));

        byte[] onnx = trained.ToOnnx();
        var ops = global::Onnx.ModelProto.Parser.ParseFrom(onnx).Graph.Node.Select(n => n.OpType).ToHashSet();
        Assert.DoesNotContain("Gather", ops);
        Assert.DoesNotContain("Asinh", ops);

        string scorePath = Path.Combine(_directory, "numeric-score.csv");
        File.WriteAllLines(scorePath, [header, .. Enumerable.Range(0, 200).Select(i => Row(i % 10 == 0 ? 1e6 : 1)), "-1e30,1e30,0,-0,1e-30,"]);
        using var bundle = ModelBundle.Load(onnx, "test");
        var table = FeatureTable.Load(scorePath, bundle.Schema);
        var scored = bundle.Score(table, batchRows: 64);
        var (engineScores, engineFeatures, _) = EngineScores(trained.Models, table);
        AssertClose(engineScores, scored.Scores, "score");
        AssertClose(engineFeatures, scored.FeatureScores, "feature score");
    }

    [Theory]
    [InlineData(ScoreFunction.NegativeElbo, false)]
    [InlineData(ScoreFunction.ReconstructionProbability, true)]
    [InlineData(ScoreFunction.NegativeElbo, true)]
    public void OnnxRuntimeMatchesTheEngineWithTheElboAndQuantileMaps(ScoreFunction scoreFunction, bool quantileMaps)
    {
        var spec = FeatureSpec.Parse(MixedData.SpecJson);
        string trainPath = MixedData.WriteCsv(_directory, "train-opt-in.csv", 600, seed: 1);
        var trained = Trainer.Train(trainPath, quantileMaps ? spec.WithQuantileMaps() : spec, Quick with { Ensemble = 2, ScoreFunction = scoreFunction });
        Assert.All(trained.Models, m => Assert.Equal(scoreFunction, m.ScoreFunction));
        Assert.Equal(quantileMaps, trained.Schema.Features.Any(f => f.QuantileMap is not null));
        using var bundle = ModelBundle.Load(trained.ToOnnx(), "test");
        Assert.All(ModelFile.Read(trained.ToOnnx(), "test").Members, m => Assert.Equal(scoreFunction, m.ScoreFunction));

        string path = MixedData.WriteCsv(_directory, "score-opt-in.csv", rows: 300, seed: 99, missingRate: 0.1, anomalyRate: 0.2);
        File.AppendAllText(path, "x1,1e30,-1e30,1e30,purple,true,1\nx2,,,,,,0\n");
        var table = FeatureTable.Load(path, bundle.Schema);
        var onnx = bundle.Score(table, batchRows: 128);
        var engine = EngineScores(trained.Models, table);
        AssertClose(engine.Scores, onnx.Scores, "score");
        AssertClose(engine.FeatureScores, onnx.FeatureScores, "feature score");
        Assert.All(onnx.Scores, s => Assert.True(float.IsFinite(s), $"score {s} is not finite"));
    }

    [Fact]
    public void TheElboScoreIsTheMeanReconstructionNllPlusAPositiveKlSoNeverBelowTheReconstructionProbability()
    {
        string trainPath = MixedData.WriteCsv(_directory, "train-elbo.csv", 400, seed: 1);
        var elbo = Trainer.Train(trainPath, FeatureSpec.Parse(MixedData.SpecJson), Quick with { Ensemble = 1, ScoreFunction = ScoreFunction.NegativeElbo }).Result.Model;
        var same = new VaeModel(elbo.Layout, elbo.LatentSize, elbo.Encoder, elbo.Decoder, elbo.Noise,
            elbo.NumericLogVarMin, elbo.NumericLogVarMax, elbo.LatentLogVarMin, elbo.LatentLogVarMax);
        Assert.Equal(ScoreFunction.ReconstructionProbability, same.ScoreFunction);
        var table = FeatureTable.Load(MixedData.WriteCsv(_directory, "score-elbo.csv", 200, seed: 5, anomalyRate: 0.2), FeatureSchema.Fit(FeatureSpec.Parse(MixedData.SpecJson), trainPath));
        var values = table.StandardizedValues();
        var withKl = new float[table.RowCount];
        var reconstruction = new float[table.RowCount];
        using (var scorer = new VaeScorer(elbo))
            scorer.Score(values, table.Mask, withKl);
        using (var scorer = new VaeScorer(same))
            scorer.Score(values, table.Mask, reconstruction);
        // −mean log p ≥ −log mean p (Jensen) and KL ≥ 0: the −ELBO is never below the reconstruction probability's score.
        Assert.All(withKl.Zip(reconstruction), p => Assert.True(p.First >= p.Second - 1e-4f, $"-ELBO {p.First} below {p.Second}"));
        Assert.True(withKl.Zip(reconstruction).Average(p => p.First - p.Second) > 0.01, "the KL term added nothing");
    }

    [Fact]
    public void SameDataSeedAndThreadsGiveIdenticalBytes()
    {
        var first = Fixed(TrainMixed(rows: 400)).ToOnnx();
        var second = Fixed(TrainMixed(rows: 400)).ToOnnx();
        Assert.Equal(2, new VaeTrainingOptions().Ensemble); // the default model, two VAEs, is what this compares
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

        var contents = ModelFile.Read(path);
        var (model, schema, calibration, summary) = contents;
        Assert.Equal(trained.Schema.ToJson(), schema.ToJson());
        Assert.Equal(trained.Calibration.Threshold, calibration.Threshold);
        Assert.Equal(trained.Summary.Seed, summary!.Seed);
        Assert.Equal(2, summary.Ensemble);
        Assert.Equal(trained.Models.Count, contents.Members.Count);
        Assert.Equal(trained.Result.Model.Noise, model.Noise);
        for (int m = 0; m < trained.Models.Count; m++)
        {
            Assert.Equal(trained.Models[m].Noise, contents.Members[m].Noise);
            for (int i = 0; i < model.Decoder.Count; i++)
                Assert.Equal(trained.Models[m].Decoder[i].Weights, contents.Members[m].Decoder[i].Weights);
        }
        Assert.NotEqual(contents.Members[0].Decoder[0].Weights, contents.Members[1].Decoder[0].Weights);

        // Re-exporting what was read (as recalibration does) gives the same file.
        Assert.Equal(File.ReadAllBytes(path), VaeOnnxExport.ToBytes(contents.Members, schema, calibration, summary, contents.Window));

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

    [Fact]
    public void OneVaeWritesTheSingleModelFormatAndReadsBackAsOneMember()
    {
        // K = 1 is the format of files written before ensembles: no member count, no member-prefixed weights.
        var trained = TrainMixed(rows: 300, Quick with { Ensemble = 1 });
        string path = Path.Combine(_directory, "single.onnx");
        trained.Save(path);
        using (var bundle = ModelBundle.Load(path))
        {
            Assert.DoesNotContain("members", bundle.Metadata.ArchitectureJson!, StringComparison.Ordinal);
            Assert.DoesNotContain("ensemble", bundle.TrainingSummaryJson, StringComparison.Ordinal);
        }
        var contents = ModelFile.Read(path);
        Assert.Single(contents.Members);
        Assert.Null(contents.Summary!.Ensemble);
    }

    [Fact]
    public void EnsembleMembersNeverTrainOnTheCalibrationRowsAndStopOnTheirOwn()
    {
        var trained = TrainMixed(rows: 400, Quick with { Ensemble = 3 });
        Assert.Equal(3, trained.Models.Count);
        Assert.Equal([7, 7001, 7002], [trained.Result.Options.Seed, .. trained.OtherMembers.Select(m => m.Options.Seed)]);
        var calibrationRows = trained.Result.ValidationIndices;
        Assert.Equal(40, calibrationRows.Count);
        var own = new List<int[]>();
        foreach (var member in trained.OtherMembers)
        {
            // Member m's rows are the 360 others in its own order; its first 40 validate, the other 320 train.
            int[] rows = VaeEnsemble.MemberRows(400, calibrationRows, member.Options.Seed);
            Assert.Equal(360, rows.Length);
            Assert.Empty(rows.Intersect(calibrationRows));
            Assert.Equal(360, rows.Distinct().Count());
            Assert.Equal(Enumerable.Range(0, 40), member.ValidationIndices);
            own.Add(rows[..40]);
        }
        Assert.NotEqual(own[0].Order(), own[1].Order());
        Assert.Equal(3, trained.Summary.MemberValidationLoss!.Count);
        // Calibration holds the combined score of the held-out rows.
        Assert.Equal(trained.Result.ValidationIndices.Count, trained.CalibrationScores.Length);
    }

    [Fact]
    public void EnsembleScoreIsMinusLogOfTheMembersMeanProbabilityAndAttributionsTheirShareWeightedMean()
    {
        var trained = TrainMixed(rows: 300, Quick with { Ensemble = 2 });
        var table = FeatureTable.Load(MixedData.WriteCsv(_directory, "few.csv", rows: 20, seed: 5, anomalyRate: 0.3), trained.Schema);
        var values = table.StandardizedValues();
        int n = table.RowCount, f = table.FeatureCount;
        var s = new float[2][];
        var fs = new float[2][];
        for (int m = 0; m < 2; m++)
        {
            s[m] = new float[n];
            fs[m] = new float[n * f];
            using var scorer = new VaeScorer(trained.Models[m]);
            scorer.Score(values, table.Mask, s[m], fs[m]);
        }
        var scores = new float[n];
        var features = new float[n * f];
        VaeEnsemble.Score(trained.Models, values, table.Mask, scores, features);
        for (int i = 0; i < n; i++)
        {
            // p̂_k relative to the larger of the two (exp(−score) itself underflows for very unusual rows).
            double best = Math.Min(s[0][i], s[1][i]);
            double p0 = Math.Exp(best - s[0][i]), p1 = Math.Exp(best - s[1][i]);
            Assert.Equal(best - Math.Log((p0 + p1) / 2), scores[i], 1e-3);
            for (int j = 0; j < f; j++)
                Assert.Equal(((p0 * fs[0][i * f + j]) + (p1 * fs[1][i * f + j])) / (p0 + p1), features[i * f + j], 1e-3);
        }
    }

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    private TrainedModel TrainMixed(int rows, VaeTrainingOptions? options = null)
    {
        string path = MixedData.WriteCsv(_directory, $"train-{rows}.csv", rows, seed: 1);
        return Trainer.Train(path, FeatureSpec.Parse(MixedData.SpecJson), options ?? Quick);
    }

    /// <summary>The C# engine's score, feature scores and latent means of a table, as the exported graph should give them.</summary>
    private static (float[] Scores, float[] FeatureScores, float[] LatentMeans) EngineScores(IReadOnlyList<VaeModel> models, FeatureTable table)
    {
        var scores = new float[table.RowCount];
        var features = new float[table.RowCount * table.FeatureCount];
        var latent = new float[table.RowCount * models[0].LatentSize];
        VaeEnsemble.Score(models, table.StandardizedValues(), table.Mask, scores, features, latent);
        return (scores, features, latent);
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
