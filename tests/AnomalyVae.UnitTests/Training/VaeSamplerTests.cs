using AnomalyVae.Model;
using AnomalyVae.Training.Engine;

namespace AnomalyVae.UnitTests.Training;

public sealed class VaeSamplerTests
{
    /// <summary>
    /// A model whose decoder ignores z (zero weights) and outputs fixed heads: numeric mean 1 and variance 4,
    /// categorical (K = 3) probabilities 0.2/0.3/0.5, binary probability 0.2.
    /// </summary>
    private static VaeModel FixedHeadModel()
    {
        var features = new[] { VaeFeature.Numeric(), VaeFeature.Categorical(3), VaeFeature.Binary() };
        var layout = new VaeLayout(features);
        const int z = 2;
        var encoder = new DenseLayer(layout.InputWidth, 2 * z, new float[layout.InputWidth * 2 * z], new float[2 * z], Activation.Identity, 0f);
        var bias = new float[layout.HeadWidth];
        bias[layout.HeadOffsets[0]] = 1f;
        bias[layout.NumericLogVarOffset + layout.HeadOffsets[0]] = MathF.Log(4f);
        bias[layout.HeadOffsets[1]] = MathF.Log(0.2f);
        bias[layout.HeadOffsets[1] + 1] = MathF.Log(0.3f);
        bias[layout.HeadOffsets[1] + 2] = MathF.Log(0.5f);
        bias[layout.HeadOffsets[2]] = MathF.Log(0.2f / 0.8f);
        var decoder = new DenseLayer(z, layout.HeadWidth, new float[z * layout.HeadWidth], bias, Activation.Identity, 0f);
        return new VaeModel(layout, z, [encoder], [decoder], new float[z]);
    }

    [Fact]
    public void Samples_follow_the_decoded_likelihoods_and_repeat_per_seed()
    {
        var model = FixedHeadModel();
        var generator = new VaeSampler(model);
        const int rows = 6000;
        var latent = new float[rows * model.LatentSize];
        var values = new float[rows * 3];
        generator.Sample(latent, values, seed: 4);

        var numeric = Enumerable.Range(0, rows).Select(r => (double)values[r * 3]).ToArray();
        double mean = numeric.Average();
        double sd = Math.Sqrt(numeric.Select(v => (v - mean) * (v - mean)).Average());
        Assert.InRange(mean, 0.92, 1.08); // ±3 standard errors (2/√6000 ≈ 0.026)
        Assert.InRange(sd, 1.93, 2.07);
        for (int k = 0; k < 3; k++)
        {
            double frequency = Enumerable.Range(0, rows).Count(r => values[r * 3 + 1] == k) / (double)rows;
            Assert.InRange(frequency, new[] { 0.2, 0.3, 0.5 }[k] - 0.02, new[] { 0.2, 0.3, 0.5 }[k] + 0.02);
        }

        Assert.All(Enumerable.Range(0, rows), r => Assert.True(values[r * 3 + 2] is 0f or 1f));
        Assert.InRange(Enumerable.Range(0, rows).Count(r => values[r * 3 + 2] == 1f) / (double)rows, 0.18, 0.22);

        var again = new float[values.Length];
        generator.Sample(latent, again, seed: 4);
        Assert.Equal(values, again);
        generator.Sample(latent, again, seed: 5);
        Assert.NotEqual(values, again);
    }

    [Fact]
    public void Mean_only_samples_are_the_decoded_means_and_decode_clamps_log_variance()
    {
        var model = ScorerTests.RandomModel(Activation.Tanh, 2, 41);
        var generator = new VaeSampler(model);
        var layout = model.Layout;
        const int rows = 90;
        var latent = new float[rows * model.LatentSize];
        var rng = new DeterministicRandom(3);
        for (int i = 0; i < latent.Length; i++)
            latent[i] = (float)(4 * rng.NextGaussian()); // far out, so some log-variances hit the clamp
        var heads = new float[rows * layout.HeadWidth];
        generator.Decode(latent, heads);
        var values = new float[rows * layout.FeatureCount];
        generator.Sample(latent, values, seed: 1, numericMeanOnly: true);

        var net = VaeNetwork.FromModel(model, out var p);
        var pd = p.Select(v => (double)v).ToArray();
        for (int r = 0; r < rows; r++)
        {
            double[] o = [.. latent.AsSpan(r * model.LatentSize, model.LatentSize).ToArray().Select(v => (double)v)];
            foreach (var layer in net.Decoder)
                o = ReferenceVae.DenseForward(layer, pd, o);
            foreach (int j in layout.NumericFeatures)
            {
                int mean = layout.HeadOffsets[j], logVar = layout.NumericLogVarOffset + mean;
                Assert.Equal(o[mean], heads[r * layout.HeadWidth + mean], 1e-4 * (1 + Math.Abs(o[mean])));
                Assert.Equal(Math.Clamp(o[logVar], model.NumericLogVarMin, model.NumericLogVarMax), heads[r * layout.HeadWidth + logVar], 1e-4 * (1 + Math.Abs(o[logVar])));
                Assert.Equal(heads[r * layout.HeadWidth + mean], values[r * layout.FeatureCount + j]);
            }

            foreach (int j in layout.CategoricalFeatures)
            {
                float v = values[r * layout.FeatureCount + j];
                Assert.True(v == MathF.Floor(v) && v >= 0 && v < layout.Features[j].Categories);
            }
        }

        Assert.Throws<ArgumentException>(() => generator.Decode(latent.AsSpan(1), heads));
    }
}
