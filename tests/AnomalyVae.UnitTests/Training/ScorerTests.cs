using AnomalyVae.Model;
using AnomalyVae.Training.Engine;

namespace AnomalyVae.UnitTests.Training;

public sealed class ScorerTests
{
    /// <summary>A model with random (non-trivial) parameters over the mixed fixture features.</summary>
    internal static VaeModel RandomModel(Activation activation, int samples, ulong seed, bool perFeatureVariance = false)
    {
        var layout = new VaeLayout(VaeFixture.Features);
        var net = new VaeNetwork(layout, [12, 9], 3, activation, 0.1f, perFeatureVariance: perFeatureVariance);
        var p = new float[net.ParameterCount];
        net.Initialize(p, seed);
        var rng = new DeterministicRandom(seed, 9);
        for (int i = 0; i < p.Length; i++)
            p[i] += (float)(0.2 * rng.NextGaussian());
        var noise = new float[samples * net.Latent];
        rng.FillGaussian(noise);
        return net.ToModel(p, noise, ScoreFunction.ReconstructionProbability);
    }

    /// <summary>Scores and per-feature scores in double precision, straight from the model's definition.</summary>
    private static (double[] Scores, double[] FeatureScores) ReferenceScores(VaeModel model, float[] values, float[] mask, int rows)
    {
        var net = VaeNetwork.FromModel(model, out var pf);
        var p = pf.Select(v => (double)v).ToArray();
        var layout = model.Layout;
        int f = layout.FeatureCount, z = model.LatentSize, samples = model.NoiseSamples;
        var scores = new double[rows];
        var featureScores = new double[rows * f];
        for (int r = 0; r < rows; r++)
        {
            var input = new double[layout.InputWidth];
            for (int j = 0; j < f; j++)
            {
                input[layout.MaskOffset + j] = mask[r * f + j];
                if (mask[r * f + j] == 0)
                    continue;
                if (layout.Features[j].Kind == FeatureKind.Categorical)
                    input[layout.InputOffsets[j] + (int)values[r * f + j]] = 1;
                else
                    input[layout.InputOffsets[j]] = values[r * f + j];
            }

            var h = input;
            foreach (var l in net.Encoder)
                h = ReferenceVae.DenseForward(l, p, h);
            var logLik = new double[samples, f];
            for (int l = 0; l < samples; l++)
            {
                var latent = new double[z];
                for (int k = 0; k < z; k++)
                    latent[k] = h[k] + Math.Exp(0.5 * Math.Clamp(h[z + k], model.LatentLogVarMin, model.LatentLogVarMax)) * model.Noise[l * z + k];
                var o = latent;
                foreach (var layer in net.Decoder)
                    o = ReferenceVae.DenseForward(layer, p, o);
                for (int j = 0; j < f; j++)
                {
                    if (mask[r * f + j] == 0)
                        continue;
                    double x = values[r * f + j];
                    int off = layout.HeadOffsets[j];
                    logLik[l, j] = -(layout.Features[j].Kind switch
                    {
                        FeatureKind.Numeric => ReferenceVae.Gaussian(x, o[off], o[layout.NumericLogVarOffset + off], model.NumericLogVarMin, model.NumericLogVarMax),
                        FeatureKind.Binary => ReferenceVae.Bernoulli(x, o[off]),
                        _ => ReferenceVae.Categorical((int)x, o[off..(off + layout.Features[j].Categories)]),
                    });
                }
            }

            static double NegLogMeanExp(IEnumerable<double> a)
            {
                var arr = a.ToArray();
                double max = arr.Max();
                return -(max + Math.Log(arr.Sum(v => Math.Exp(v - max)) / arr.Length));
            }

            scores[r] = NegLogMeanExp(Enumerable.Range(0, samples).Select(l => Enumerable.Range(0, f).Sum(j => logLik[l, j])));
            for (int j = 0; j < f; j++)
                featureScores[r * f + j] = NegLogMeanExp(Enumerable.Range(0, samples).Select(l => logLik[l, j]));
        }

        return (scores, featureScores);
    }

    [Theory]
    [InlineData(Activation.Tanh, 16)]
    [InlineData(Activation.LeakyRelu, 5)]
    [InlineData(Activation.Elu, 1)]
    public void Scores_match_a_double_precision_reference(Activation activation, int samples)
    {
        var model = RandomModel(activation, samples, 21);
        const int rows = 150; // more than two scoring blocks
        var (values, mask) = VaeFixture.Rows(model.Layout, rows, 22);
        var scores = new float[rows];
        int f = model.Layout.FeatureCount;
        var featureScores = new float[rows * f];
        using var scorer = new VaeScorer(model, threads: 2);
        scorer.Score(values, mask, scores, featureScores);
        var (expected, expectedFeatures) = ReferenceScores(model, values, mask, rows);
        for (int r = 0; r < rows; r++)
            Assert.Equal(expected[r], scores[r], 1e-4 * (1 + Math.Abs(expected[r])));
        for (int i = 0; i < rows * f; i++)
            Assert.Equal(expectedFeatures[i], featureScores[i], 1e-4 * (1 + Math.Abs(expectedFeatures[i])));
    }

    [Fact]
    public void With_one_sample_feature_scores_add_up_to_the_score_and_missing_features_score_zero()
    {
        var model = RandomModel(Activation.Tanh, 1, 23);
        const int rows = 40;
        var (values, mask) = VaeFixture.Rows(model.Layout, rows, 24);
        int f = model.Layout.FeatureCount;
        var scores = new float[rows];
        var featureScores = new float[rows * f];
        using var scorer = new VaeScorer(model);
        scorer.Score(values, mask, scores, featureScores);
        for (int r = 0; r < rows; r++)
        {
            Assert.Equal(scores[r], featureScores.AsSpan(r * f, f).ToArray().Sum(), 1e-4 * (1 + Math.Abs(scores[r])));
            for (int j = 0; j < f; j++)
            {
                if (mask[r * f + j] == 0)
                    Assert.Equal(0f, featureScores[r * f + j]);
            }
        }
    }

    [Fact]
    public void A_row_scores_the_same_bits_whatever_the_threads_or_the_rest_of_the_batch()
    {
        var model = RandomModel(Activation.Tanh, 8, 25);
        const int rows = 200;
        var (values, mask) = VaeFixture.Rows(model.Layout, rows, 26);
        int f = model.Layout.FeatureCount;
        var one = new float[rows];
        var three = new float[rows];
        using (var scorer = new VaeScorer(model, threads: 1))
            scorer.Score(values, mask, one);
        using (var scorer = new VaeScorer(model, threads: 3))
            scorer.Score(values, mask, three);
        Assert.Equal(one, three);

        using var single = new VaeScorer(model);
        var s = new float[1];
        foreach (int r in new[] { 0, 63, 64, 130, 199 })
        {
            single.Score(values.AsSpan(r * f, f), mask.AsSpan(r * f, f), s);
            Assert.Equal(one[r], s[0]);
        }
    }

    [Fact]
    public void Scoring_allocates_nothing_after_warm_up()
    {
        var model = RandomModel(Activation.Tanh, 16, 27);
        const int rows = 300;
        var (values, mask) = VaeFixture.Rows(model.Layout, rows, 28);
        var scores = new float[rows];
        var featureScores = new float[rows * model.Layout.FeatureCount];
        var latent = new float[rows * model.LatentSize];
        foreach (int threads in new[] { 1, 2 })
        {
            using var scorer = new VaeScorer(model, threads);
            scorer.Score(values, mask, scores, featureScores, latent);
            Assert.Equal(0, Allocations.Fewest(() =>
            {
                for (int i = 0; i < 5; i++)
                    scorer.Score(values, mask, scores, featureScores, latent);
            }));
        }
    }

    [Fact]
    public void Latent_mean_output_is_the_encoder_mean()
    {
        var model = RandomModel(Activation.Tanh, 4, 29);
        const int rows = 70;
        var (values, mask) = VaeFixture.Rows(model.Layout, rows, 30);
        var latent = new float[rows * model.LatentSize];
        using (var scorer = new VaeScorer(model))
            scorer.Score(values, mask, new float[rows], latentMean: latent);
        var mean = new float[rows * model.LatentSize];
        var logVar = new float[rows * model.LatentSize];
        new VaeSampler(model).Encode(values, mask, mean, logVar);
        Assert.Equal(mean, latent);
        Assert.All(logVar, v => Assert.InRange(v, model.LatentLogVarMin, model.LatentLogVarMax));
    }

    [Fact]
    public void Malformed_batches_are_rejected()
    {
        var model = RandomModel(Activation.Tanh, 2, 31);
        int f = model.Layout.FeatureCount;
        var (values, mask) = VaeFixture.Rows(model.Layout, 3, 32);
        using var scorer = new VaeScorer(model);
        Assert.Throws<ArgumentException>(() => scorer.Score(values.AsSpan(0, 2 * f), mask, new float[3]));
        Assert.Throws<ArgumentException>(() => scorer.Score(values, mask, new float[3], new float[f]));
        values[f + 1] = 7f; // categorical K = 3
        mask[f + 1] = 1f;
        var error = Assert.Throws<ArgumentException>(() => scorer.Score(values, mask, new float[3]));
        Assert.Contains("Row 1, feature 1", error.Message);
    }
}
