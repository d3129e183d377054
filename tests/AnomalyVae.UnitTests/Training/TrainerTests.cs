using AnomalyVae.Tests;
using AnomalyVae.Tools;
using AnomalyVae.Training.Engine;

namespace AnomalyVae.UnitTests.Training;

public sealed unsafe class TrainerTests
{
    private static VaeDataset MixedData(int rows, ulong seed)
    {
        var layout = new VaeLayout(VaeFixture.Features);
        var (values, mask) = VaeFixture.Rows(layout, rows, seed);
        return new VaeDataset(VaeFixture.Features, values, mask, rows);
    }

    private static byte[] WeightBytes(VaeModel model)
    {
        var bytes = new List<byte>();
        foreach (var layer in model.Encoder.Concat(model.Decoder))
        {
            bytes.AddRange(System.Runtime.InteropServices.MemoryMarshal.AsBytes(layer.Weights.AsSpan()).ToArray());
            bytes.AddRange(System.Runtime.InteropServices.MemoryMarshal.AsBytes(layer.Bias.AsSpan()).ToArray());
        }

        bytes.AddRange(System.Runtime.InteropServices.MemoryMarshal.AsBytes(model.Noise.AsSpan()).ToArray());
        return [.. bytes];
    }

    private static readonly VaeTrainingOptions Small = new()
    {
        Hidden = [24, 12],
        Latent = 3,
        Epochs = 4,
        BatchSize = 64,
        Threads = 2,
        Patience = 5,
        KlWarmupEpochs = 2,
        ScoringSamples = 4,
    };

    [Fact]
    public void Same_data_seed_and_threads_give_bit_identical_weights()
    {
        var data = MixedData(700, 3);
        var first = VaeTrainer.Train(data, Small with { Seed = 11 });
        var second = VaeTrainer.Train(data, Small with { Seed = 11 });
        Assert.Equal(WeightBytes(first.Model), WeightBytes(second.Model));
        Assert.Equal(first.History.Select(h => h.ValidationLoss), second.History.Select(h => h.ValidationLoss));

        var otherSeed = VaeTrainer.Train(data, Small with { Seed = 12 });
        Assert.NotEqual(WeightBytes(first.Model), WeightBytes(otherSeed.Model));
    }

    [Fact]
    public void Missing_injection_is_seeded_and_changes_the_fit()
    {
        var data = MixedData(700, 3);
        var injecting = Small with { Seed = 11, MissingInjectionRate = 0.3f, MissingInjectionGroup = 2 };
        var first = VaeTrainer.Train(data, injecting);
        var second = VaeTrainer.Train(data, injecting);
        Assert.Equal(WeightBytes(first.Model), WeightBytes(second.Model));

        var clean = VaeTrainer.Train(data, Small with { Seed = 11 });
        var off = VaeTrainer.Train(data, Small with { Seed = 11, MissingInjectionRate = 0 });
        Assert.Equal(WeightBytes(clean.Model), WeightBytes(off.Model));
        Assert.NotEqual(WeightBytes(clean.Model), WeightBytes(first.Model));
    }

    [Fact]
    public void Early_stopping_keeps_the_best_epoch_weights()
    {
        // A high learning rate on a small, structureless table overfits quickly, so validation loss turns up.
        var data = MixedData(160, 4);
        var options = Small with { Epochs = 300, Patience = 3, LearningRate = 0.02f, KlWarmupEpochs = 0, ValidationFraction = 0.3, Seed = 5 };
        var stopped = VaeTrainer.Train(data, options);
        Assert.True(stopped.StoppedEarly);
        Assert.Equal(stopped.BestEpoch + 3, stopped.History.Count);
        Assert.Equal(stopped.History.Min(h => h.ValidationLoss), stopped.History[stopped.BestEpoch - 1].ValidationLoss);
        Assert.True(stopped.History[stopped.BestEpoch - 1].IsBest);

        // Training exactly BestEpoch epochs retraces the same steps; its final weights are the kept ones.
        var replay = VaeTrainer.Train(data, options with { Epochs = stopped.BestEpoch });
        Assert.Equal(stopped.BestEpoch, replay.BestEpoch);
        Assert.Equal(WeightBytes(stopped.Model), WeightBytes(replay.Model));
    }

    [Fact]
    public void Training_steps_and_validation_allocate_nothing()
    {
        var data = MixedData(512, 6);
        var layout = data.Layout;
        var network = new VaeNetwork(layout, [32, 16], 4, Activation.Tanh, 0f, perFeatureVariance: true);
        int[] rows = [.. Enumerable.Range(0, data.Rows)];
        foreach (int threads in new[] { 1, 2 })
        {
            using var session = new TrainingSession(data, network, threads, 128, 1, 1e-3f, 0.01f, rows);
            for (int i = 0; i < 3; i++)
                session.Step(rows, i * 128, 128, 1f);
            session.Evaluate(rows, 1f);
            long before = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < 40; i++)
                session.Step(rows, i % 4 * 128, 128, 0.5f);
            session.Evaluate(rows, 1f);
            long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            Assert.Equal(0, allocated);
        }
    }

    [Fact]
    public void Training_lowers_the_validation_loss_on_structured_data()
    {
        var data = TrainingBenchmark.SyntheticData(3000, 10, seed: 2);
        var result = VaeTrainer.Train(data, new VaeTrainingOptions { Epochs = 15, Seed = 1 });
        double first = result.History[0].ValidationLoss!.Value;
        double best = result.History[result.BestEpoch - 1].ValidationLoss!.Value;
        Assert.True(best < 0.85 * first, $"validation −ELBO went from {first:F3} to only {best:F3}");
    }

    [Theory]
    [InlineData(NumericVariance.PerFeature, true)]
    [InlineData(NumericVariance.PerRow, false)]
    public void Per_feature_variance_keeps_the_log_variance_head_independent_of_z(NumericVariance variance, bool zeroWeights)
    {
        var result = VaeTrainer.Train(MixedData(300, 13), Small with { NumericVariance = variance });
        var head = result.Model.Decoder[^1];
        var layout = result.Model.Layout;
        var logVarWeights = head.Weights.AsSpan(layout.NumericLogVarOffset * head.Inputs, layout.NumericFeatures.Count * head.Inputs).ToArray();
        Assert.Equal(zeroWeights, logVarWeights.All(w => w == 0f));
        // The biases (the per-feature log-variances) train either way.
        Assert.Contains(head.Bias.Skip(layout.NumericLogVarOffset).Take(layout.NumericFeatures.Count), b => b != 0f);
    }

    [Fact]
    public void Kl_warmup_ramps_beta_linearly_then_holds()
    {
        var result = VaeTrainer.Train(MixedData(300, 7), Small with { Epochs = 6, KlWarmupEpochs = 4, Beta = 2f, Patience = 100 });
        Assert.Equal([0.5f, 1f, 1.5f, 2f, 2f, 2f], result.History.Select(h => h.Beta).ToArray());
    }

    [Fact]
    public void Progress_is_reported_once_per_epoch_with_a_consistent_clock()
    {
        var reports = new List<VaeEpochProgress>();
        var result = VaeTrainer.Train(MixedData(300, 8), Small with { Epochs = 5, Patience = 100 }, reports.Add);
        Assert.Equal(result.History, reports);
        Assert.Equal([1, 2, 3, 4, 5], reports.Select(r => r.Epoch).ToArray());
        Assert.All(reports, r => Assert.Equal(5, r.Epochs));
        Assert.All(reports, r => Assert.True(r.Remaining >= TimeSpan.Zero && double.IsFinite(r.TrainLoss) && r.ValidationLoss is not null));
        Assert.True(reports.Zip(reports.Skip(1)).All(p => p.First.Elapsed <= p.Second.Elapsed));
        Assert.Equal(TimeSpan.Zero, reports[^1].Remaining);
    }

    [Fact]
    public void Cancellation_stops_training()
    {
        using var cts = new CancellationTokenSource();
        Assert.ThrowsAny<OperationCanceledException>(() =>
            VaeTrainer.Train(MixedData(300, 9), Small with { Epochs = 50 }, _ => cts.Cancel(), cts.Token));
    }

    [Fact]
    public void A_single_row_trains_without_validation()
    {
        var result = VaeTrainer.Train(MixedData(1, 10), Small with { Epochs = 3 });
        Assert.Equal(0, result.Options.ValidationRows(1));
        Assert.Equal(3, result.BestEpoch);
        Assert.All(result.History, h => Assert.Null(h.ValidationLoss));
    }

    [Theory]
    [InlineData("categorical and binary only")]
    [InlineData("one numeric feature")]
    [InlineData("a feature that is always missing")]
    public void Unusual_tables_train_and_score(string table)
    {
        VaeFeature[] features = table switch
        {
            "categorical and binary only" => [VaeFeature.Categorical(5), VaeFeature.Binary(), VaeFeature.Categorical(2)],
            "one numeric feature" => [VaeFeature.Numeric()],
            _ => [VaeFeature.Numeric(), VaeFeature.Numeric(), VaeFeature.Binary()],
        };
        var layout = new VaeLayout(features);
        var (values, mask) = VaeFixture.Rows(layout, 200, 3);
        if (table == "a feature that is always missing")
        {
            for (int r = 0; r < 200; r++)
                mask[r * features.Length + 1] = 0f;
        }

        var result = VaeTrainer.Train(new VaeDataset(features, values, mask, 200), Small with { Epochs = 3 });
        var scores = new float[200];
        var featureScores = new float[200 * features.Length];
        using var scorer = new VaeScorer(result.Model);
        scorer.Score(values, mask, scores, featureScores);
        Assert.All(scores, s => Assert.True(float.IsFinite(s)));
        Assert.All(featureScores, s => Assert.True(float.IsFinite(s)));
        if (table == "a feature that is always missing")
            Assert.All(Enumerable.Range(0, 200), r => Assert.Equal(0f, featureScores[r * features.Length + 1]));
    }

    [Fact]
    public void Defaults_follow_the_documented_rule()
    {
        var cardioLike = new VaeLayout(Enumerable.Repeat(VaeFeature.Numeric(), 21).ToArray());
        var small = new VaeTrainingOptions().Resolve(827, cardioLike);
        Assert.Equal([88], small.Hidden!); // 2·(21 + 21)
        Assert.Equal(7, small.Latent);
        Assert.Equal(32, small.BatchSize); // 744 training rows / 32 ≈ 23 → at least 32
        Assert.Equal(834, small.Epochs); // 24 steps per epoch → ⌈20,000 / 24⌉ (the cap is 3,000)
        Assert.Equal(20, small.Patience);
        Assert.Equal(10, small.KlWarmupEpochs);
        Assert.Equal(1, small.Threads); // batch 32 < 128 rows per thread

        var wide = new VaeLayout([.. Enumerable.Repeat(VaeFeature.Categorical(40), 10), .. Enumerable.Repeat(VaeFeature.Numeric(), 100)]);
        var large = new VaeTrainingOptions().Resolve(1_000_000, wide);
        Assert.Equal([512], large.Hidden!);
        Assert.Equal(32, large.Latent);
        Assert.Equal(256, large.BatchSize);
        Assert.Equal(6, large.Epochs); // 900,000 / 256 = 3,516 steps per epoch
        Assert.Equal(5, large.Patience);
        Assert.Equal(0, large.KlWarmupEpochs);

        var explicitOptions = new VaeTrainingOptions { Hidden = [7], Latent = 2, Epochs = 9, BatchSize = 5, Threads = 3, Patience = 2, KlWarmupEpochs = 1 };
        Assert.Equal(explicitOptions, explicitOptions.Resolve(1000, cardioLike));
    }

    [Theory]
    [InlineData("latent")]
    [InlineData("rate")]
    [InlineData("validation")]
    [InlineData("hidden")]
    [InlineData("logvar")]
    [InlineData("injection")]
    [InlineData("group")]
    public void Invalid_options_are_rejected(string which)
    {
        var options = which switch
        {
            "latent" => new VaeTrainingOptions { Latent = 0 },
            "rate" => new VaeTrainingOptions { LearningRate = float.NaN },
            "validation" => new VaeTrainingOptions { ValidationFraction = 1 },
            "hidden" => new VaeTrainingOptions { Hidden = [] },
            "injection" => new VaeTrainingOptions { MissingInjectionRate = 1 },
            "group" => new VaeTrainingOptions { MissingInjectionRate = 0.1f, MissingInjectionGroup = 0 },
            _ => new VaeTrainingOptions { NumericLogVarMin = 2, NumericLogVarMax = 1 },
        };
        var layout = new VaeLayout([VaeFeature.Numeric()]);
        Assert.Throws<ArgumentException>(() => options.Resolve(100, layout));
    }

    [Theory]
    [InlineData(1, 3f, 1f, "not a vocabulary index")] // categorical K = 3
    [InlineData(1, 1.5f, 1f, "not a vocabulary index")]
    [InlineData(3, 0.5f, 1f, "not 0 or 1")] // binary
    [InlineData(0, float.NaN, 1f, "not a finite")] // numeric
    [InlineData(0, 2e4f, 1f, "not a finite")]
    [InlineData(0, 0f, 0.5f, "mask is 0.5")]
    public void Malformed_training_data_is_rejected_naming_the_cell(int feature, float value, float maskValue, string message)
    {
        var layout = new VaeLayout(VaeFixture.Features);
        var (values, mask) = VaeFixture.Rows(layout, 4, 1);
        int f = layout.FeatureCount;
        values[2 * f + feature] = value;
        mask[2 * f + feature] = maskValue;
        var error = Assert.Throws<ArgumentException>(() => new VaeDataset(VaeFixture.Features, values, mask, 4));
        Assert.Contains($"Row 2, feature {feature}", error.Message);
        Assert.Contains(message, error.Message);
    }

    [Fact]
    public void Missing_cells_may_hold_anything_and_short_arrays_are_rejected()
    {
        var layout = new VaeLayout(VaeFixture.Features);
        var (values, mask) = VaeFixture.Rows(layout, 4, 1);
        mask[5] = 0f;
        values[5] = float.NaN;
        _ = new VaeDataset(VaeFixture.Features, values, mask, 4);
        Assert.Throws<ArgumentException>(() => new VaeDataset(VaeFixture.Features, values[..^1], mask, 4));
        Assert.Throws<ArgumentException>(() => new VaeDataset([VaeFeature.Categorical(1)], [0f], [1f], 1));
        Assert.Throws<ArgumentException>(() => VaeTrainer.Train(new VaeDataset(VaeFixture.Features, [], [], 0)));
    }
}
