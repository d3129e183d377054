using AnomalyVae.Model;
using AnomalyVae.Training.Engine;
using Xunit.Abstractions;

namespace AnomalyVae.UnitTests.Training;

/// <summary>
/// Finite-difference checks of every analytic gradient in the engine. The engine computes in float; the reference
/// (<see cref="ReferenceVae"/>) in double, so central differences with h = 1e-6 have truncation and rounding error
/// far below the float error being tested (~1e-12 relative). An analytic value g passes against the difference d when
/// |g − d| ≤ RelativeTolerance·|d| + AbsoluteTolerance·s, where s is the largest |d| in the same tensor: float
/// round-off is relative to the magnitudes summed into an entry, and an entry that cancels to near zero still
/// carries the round-off of its larger terms.
/// </summary>
public sealed unsafe class GradientCheckTests(ITestOutputHelper output)
{
    private const double Step = 1e-6;
    private const double RelativeTolerance = 2e-3;
    private const double AbsoluteTolerance = 1e-4;

    private static double CentralDifference(Func<double, double> f, double at) => (f(at + Step) - f(at - Step)) / (2 * Step);

    private static void AssertGradient(string what, double analytic, double numeric, double scale)
    {
        double allowed = RelativeTolerance * Math.Abs(numeric) + AbsoluteTolerance * Math.Max(scale, 1e-3);
        Assert.True(Math.Abs(analytic - numeric) <= allowed,
            $"{what}: analytic {analytic:G9}, finite difference {numeric:G9}, allowed error {allowed:G3}");
    }

    public static TheoryData<Activation> HiddenActivations => new()
    {
        Activation.LeakyRelu, Activation.Relu, Activation.Tanh, Activation.Elu, Activation.Softplus, Activation.Identity,
    };

    [Theory]
    [MemberData(nameof(HiddenActivations))]
    public void Activation_backward_matches_finite_differences(Activation activation)
    {
        const float alpha = 0.2f;
        var rng = new DeterministicRandom(17);
        var x = new float[37];
        for (int i = 0; i < x.Length; i++)
        {
            // Stay clear of the kink at 0, where a one-sided derivative is a convention, not a gradient.
            double v = 6 * rng.NextDouble() - 3;
            x[i] = (float)(Math.Abs(v) < 0.05 ? v + 0.1 : v);
        }

        var y = (float[])x.Clone();
        ActivationMath.Forward(activation, alpha, y);
        var upstream = new float[x.Length];
        for (int i = 0; i < x.Length; i++)
            upstream[i] = (float)(rng.NextDouble() - 0.5);
        var grad = (float[])upstream.Clone();
        ActivationMath.Backward(activation, alpha, y, grad);

        for (int i = 0; i < x.Length; i++)
        {
            Assert.Equal(ReferenceVae.Activate(activation, alpha, x[i]), y[i], 5e-6 * (1 + Math.Abs(y[i])));
            double numeric = upstream[i] * CentralDifference(v => ReferenceVae.Activate(activation, alpha, v), x[i]);
            AssertGradient($"{activation} dx[{i}] at {x[i]}", grad[i], numeric, 1);
        }
    }

    [Theory]
    [MemberData(nameof(HiddenActivations))]
    public void Dense_backward_matches_finite_differences_for_weights_bias_and_input(Activation activation)
    {
        const int rows = 9, inputs = 11, outputs = 19;
        var layer = new LayerSpec(inputs, outputs, 0, inputs * outputs, activation, 0.1f);
        int count = inputs * outputs + outputs;
        var rng = new DeterministicRandom(23);
        var p = Enumerable.Range(0, count).Select(_ => (float)(rng.NextDouble() - 0.5)).ToArray();
        var x = Enumerable.Range(0, rows * inputs).Select(_ => (float)(2 * rng.NextDouble() - 1)).ToArray();
        var c = Enumerable.Range(0, rows * outputs).Select(_ => (float)(2 * rng.NextDouble() - 1)).ToArray();

        var y = new float[rows * outputs];
        var dy = (float[])c.Clone();
        var dx = new float[rows * inputs];
        var gradient = new float[count];
        var scratch = new float[Gemm.ScratchLength(Math.Max(inputs, outputs), Math.Max(rows, Math.Max(inputs, outputs))) + 16];
        fixed (float* pp = p, px = x, py = y, pdy = dy, pdx = dx, pg = gradient, ps = scratch)
        {
            Dense.Forward(layer, pp, px, py, rows, ps);
            Dense.Backward(layer, pp, px, py, pdy, pdx, rows, pg, ps);
        }

        double Loss(double[] pd, double[] xd)
        {
            double s = 0;
            for (int r = 0; r < rows; r++)
            {
                var yr = ReferenceVae.DenseForward(layer, pd, xd[(r * inputs)..((r + 1) * inputs)]);
                for (int o = 0; o < outputs; o++)
                    s += c[r * outputs + o] * yr[o];
            }

            return s;
        }

        var pdbl = p.Select(v => (double)v).ToArray();
        var xdbl = x.Select(v => (double)v).ToArray();
        var numericParams = new double[count];
        for (int i = 0; i < count; i++)
        {
            numericParams[i] = CentralDifference(v =>
            {
                var q = (double[])pdbl.Clone();
                q[i] = v;
                return Loss(q, xdbl);
            }, pdbl[i]);
        }

        double scale = numericParams.Max(Math.Abs);
        for (int i = 0; i < count; i++)
            AssertGradient(i < inputs * outputs ? $"dW[{i}]" : $"db[{i - inputs * outputs}]", gradient[i], numericParams[i], scale);

        for (int i = 0; i < x.Length; i++)
        {
            double numeric = CentralDifference(v =>
            {
                var q = (double[])xdbl.Clone();
                q[i] = v;
                return Loss(pdbl, q);
            }, xdbl[i]);
            AssertGradient($"dx[{i}]", dx[i], numeric, 1);
        }
    }

    [Theory]
    [InlineData(0.3f, -0.4f, 0.5f)] // inside the clamp range
    [InlineData(2.5f, 0.1f, -1.9f)] // inside, near the lower end
    [InlineData(-1.0f, 0.7f, -9f)] // raw log-variance below the range: flat
    [InlineData(4.0f, -2.0f, 7.5f)] // above the range: flat
    public void Gaussian_nll_and_its_clamp_match_finite_differences(float x, float mean, float rawLogVar)
    {
        const float min = -2f, max = 3f;
        float value = Likelihood.Gaussian(x, mean, rawLogVar, min, max, out float dMean, out float dRaw);
        Assert.Equal(ReferenceVae.Gaussian(x, mean, rawLogVar, min, max), value, 1e-5 * (1 + Math.Abs(value)));
        AssertGradient("dMean", dMean, CentralDifference(m => ReferenceVae.Gaussian(x, m, rawLogVar, min, max), mean), 1);
        double numericRaw = CentralDifference(v => ReferenceVae.Gaussian(x, mean, v, min, max), rawLogVar);
        AssertGradient("dRawLogVar", dRaw, numericRaw, 1);
        if (rawLogVar <= min || rawLogVar >= max)
        {
            // In the clamp region the variance is pinned: no gradient, and the value is the one at the bound.
            Assert.Equal(0f, dRaw);
            Assert.Equal(0.0, numericRaw);
            Assert.Equal(Likelihood.Gaussian(x, mean, Math.Clamp(rawLogVar, min, max), min, max, out _, out _), value);
        }
    }

    [Theory]
    [InlineData(3)]
    [InlineData(8)]
    [InlineData(13)]
    public void Vectorized_gaussian_row_matches_the_scalar_term(int n)
    {
        const float min = -2f, max = 3f, scale = 0.25f;
        var rng = new DeterministicRandom((ulong)n);
        float[] x = new float[n], m = new float[n], mean = new float[n], raw = new float[n];
        for (int i = 0; i < n; i++)
        {
            m[i] = i % 4 == 1 ? 0f : 1f;
            x[i] = m[i] == 0f ? 0f : (float)(2 * rng.NextGaussian());
            mean[i] = (float)rng.NextGaussian();
            raw[i] = (float)(6 * rng.NextDouble() - 3.5); // some below min, some above max
        }

        float[] dMean = new float[n], dRaw = new float[n], nll = new float[n];
        float total;
        fixed (float* px = x, pm = m, pmean = mean, praw = raw, pdm = dMean, pdr = dRaw, pn = nll)
            total = Likelihood.GaussianRow(px, pm, pmean, praw, n, min, max, scale, pdm, pdr, pn);

        double expectedTotal = 0;
        for (int i = 0; i < n; i++)
        {
            float value = Likelihood.Gaussian(x[i], mean[i], raw[i], min, max, out float dm, out float dr);
            Assert.Equal(m[i] * value, nll[i], 1e-5 * (1 + Math.Abs(value)));
            Assert.Equal(m[i] * scale * dm, dMean[i], 1e-5 * (1 + Math.Abs(dm)));
            Assert.Equal(m[i] * scale * dr, dRaw[i], 1e-5 * (1 + Math.Abs(dr)));
            expectedTotal += m[i] * value;
        }

        Assert.Equal(expectedTotal, total, 1e-4 * (1 + Math.Abs(expectedTotal)));
    }

    [Theory]
    [InlineData(0, 1f)]
    [InlineData(3, 0.25f)]
    [InlineData(4, 1f)]
    public void Categorical_cross_entropy_matches_finite_differences(int index, float scale)
    {
        float[] logits = [0.3f, -1.2f, 2.5f, 0.0f, -0.7f];
        var d = new float[logits.Length];
        float value = Likelihood.Categorical(index, logits, d, scale);
        var ld = logits.Select(v => (double)v).ToArray();
        Assert.Equal(ReferenceVae.Categorical(index, ld), value, 1e-5);
        Assert.Equal(value, Likelihood.Categorical(index, logits));
        for (int k = 0; k < logits.Length; k++)
        {
            double numeric = scale * CentralDifference(v =>
            {
                var q = (double[])ld.Clone();
                q[k] = v;
                return ReferenceVae.Categorical(index, q);
            }, ld[k]);
            AssertGradient($"dLogit[{k}]", d[k], numeric, 1);
        }
    }

    [Theory]
    [InlineData(1f, 0.7f)]
    [InlineData(0f, 0.7f)]
    [InlineData(1f, -3.2f)]
    [InlineData(0f, 35f)] // far tail: must stay finite and accurate
    [InlineData(1f, -35f)]
    public void Bernoulli_nll_matches_finite_differences(float x, float logit)
    {
        float value = Likelihood.Bernoulli(x, logit, out float d);
        Assert.True(float.IsFinite(value));
        Assert.Equal(ReferenceVae.Bernoulli(x, logit), value, 1e-5 * (1 + Math.Abs(value)));
        AssertGradient("dLogit", d, CentralDifference(v => ReferenceVae.Bernoulli(x, v), logit), 1);
    }

    [Theory]
    [InlineData(0.5f, -0.3f)]
    [InlineData(-2f, 1.5f)]
    [InlineData(1f, -20f)] // below the latent clamp
    [InlineData(0.2f, 9f)] // above the latent clamp
    public void Kl_matches_finite_differences(float mu, float rawLogVar)
    {
        const float min = VaeModel.DefaultLatentLogVarMin, max = VaeModel.DefaultLatentLogVarMax;
        float value = Likelihood.Kl(mu, rawLogVar, min, max, out float dMu, out float dRaw);
        Assert.Equal(ReferenceVae.Kl(mu, rawLogVar, min, max), value, 1e-5 * (1 + Math.Abs(value)));
        AssertGradient("dMu", dMu, CentralDifference(m => ReferenceVae.Kl(m, rawLogVar, min, max), mu), 1);
        AssertGradient("dRawLogVar", dRaw, CentralDifference(v => ReferenceVae.Kl(mu, v, min, max), rawLogVar), 1);
    }

    [Theory]
    [MemberData(nameof(HiddenActivations))]
    public void Whole_vae_loss_gradient_matches_finite_differences_for_every_parameter_tensor(Activation activation)
    {
        var (net, p, values, mask, rows, eps) = VaeFixture.Create(activation, seed: 5);
        const float beta = 0.7f;
        var (loss, gradient) = VaeFixture.EngineLossAndGradient(net, p, values, mask, rows, eps, beta);
        var pd = p.Select(v => (double)v).ToArray();
        var (inside, outside) = VaeFixture.NumericLogVarClampUse(net, p, values, mask, rows, eps);
        Assert.True(inside > 0 && outside > 0, $"the fixture must exercise both sides of the log-variance clamp ({inside} in, {outside} out)");
        double reference = ReferenceVae.Loss(net, pd, values, mask, rows, eps, beta);
        Assert.Equal(reference, loss, 1e-5 * Math.Abs(reference));

        var rng = new DeterministicRandom(99);
        double worst = 0;
        int checkedEntries = 0;
        foreach (var (name, offset, length) in VaeFixture.Tensors(net))
        {
            // Every entry of small tensors, a sample of 12 from larger ones.
            var entries = length <= 24 ? Enumerable.Range(offset, length).ToArray()
                : Enumerable.Range(0, 12).Select(_ => offset + rng.NextInt(length)).ToArray();
            var numeric = entries.Select(i => CentralDifference(v =>
            {
                double old = pd[i];
                pd[i] = v;
                double l = ReferenceVae.Loss(net, pd, values, mask, rows, eps, beta);
                pd[i] = old;
                return l;
            }, pd[i])).ToArray();
            double scale = numeric.Max(Math.Abs);
            for (int e = 0; e < entries.Length; e++)
            {
                AssertGradient($"{name}[{entries[e] - offset}]", gradient[entries[e]], numeric[e], scale);
                worst = Math.Max(worst, Math.Abs(gradient[entries[e]] - numeric[e]) / (Math.Abs(numeric[e]) + 1e-3 * Math.Max(scale, 1e-3)));
                checkedEntries++;
            }
        }

        output.WriteLine($"{activation}: loss {loss:F6} (reference {reference:F6}); {checkedEntries} entries checked, worst relative error {worst:E2}");
    }

    [Fact]
    public void Masked_cells_do_not_reach_the_loss_or_the_gradient()
    {
        var (net, p, values, mask, rows, eps) = VaeFixture.Create(Activation.LeakyRelu, seed: 8);
        var (loss, gradient) = VaeFixture.EngineLossAndGradient(net, p, values, mask, rows, eps, 1f);
        var changed = (float[])values.Clone();
        int missing = 0;
        for (int i = 0; i < changed.Length; i++)
        {
            if (mask[i] == 0f)
            {
                changed[i] = i % 2 == 0 ? float.NaN : 1234.5f;
                missing++;
            }
        }

        Assert.True(missing > 3);
        var (loss2, gradient2) = VaeFixture.EngineLossAndGradient(net, p, changed, mask, rows, eps, 1f);
        Assert.Equal(loss, loss2);
        Assert.Equal(gradient, gradient2);

        // A feature missing in every row gets no reconstruction gradient on its head.
        int f = net.Layout.FeatureCount;
        int numericFeature = net.Layout.NumericFeatures[0];
        for (int r = 0; r < rows; r++)
            mask[r * f + numericFeature] = 0f;
        var (_, gradient3) = VaeFixture.EngineLossAndGradient(net, p, values, mask, rows, eps, 1f);
        var head = net.Decoder[^1];
        foreach (int o in new[] { net.Layout.HeadOffsets[numericFeature], net.Layout.NumericLogVarOffset + net.Layout.HeadOffsets[numericFeature] })
        {
            Assert.Equal(0f, gradient3[head.BiasOffset + o]);
            for (int i = 0; i < head.Inputs; i++)
                Assert.Equal(0f, gradient3[head.WeightOffset + o * head.Inputs + i]);
        }
    }
}

/// <summary>A small mixed-type VAE and batch shared by the gradient and scoring tests.</summary>
internal static unsafe class VaeFixture
{
    public static VaeFeature[] Features =>
    [
        VaeFeature.Numeric(), VaeFeature.Categorical(3), VaeFeature.Numeric(), VaeFeature.Binary(),
        VaeFeature.Categorical(4), VaeFeature.Numeric(),
    ];

    public static (float[] Values, float[] Mask) Rows(VaeLayout layout, int rows, ulong seed)
    {
        var rng = new DeterministicRandom(seed, 1);
        int f = layout.FeatureCount;
        var values = new float[rows * f];
        var mask = new float[rows * f];
        for (int r = 0; r < rows; r++)
        {
            for (int j = 0; j < f; j++)
            {
                bool present = rng.NextDouble() > 0.2;
                mask[r * f + j] = present ? 1f : 0f;
                if (!present)
                    continue;
                var feature = layout.Features[j];
                values[r * f + j] = feature.Kind switch
                {
                    AnomalyVae.Model.FeatureKind.Numeric => (float)(1.5 * rng.NextGaussian()),
                    AnomalyVae.Model.FeatureKind.Binary => rng.NextInt(2),
                    _ => rng.NextInt(feature.Categories),
                };
            }
        }

        return (values, mask);
    }

    public static (VaeNetwork Net, float[] Parameters, float[] Values, float[] Mask, int Rows, float[] Eps) Create(
        Activation activation, ulong seed)
    {
        var layout = new VaeLayout(Features);
        // A narrow numeric log-variance range so the clamp is active for some heads.
        var net = new VaeNetwork(layout, [10, 7], 3, activation, 0.1f, numericLogVarMin: -0.4f, numericLogVarMax: 0.4f);
        var p = new float[net.ParameterCount];
        net.Initialize(p, seed);
        var rng = new DeterministicRandom(seed, 2);
        for (int i = 0; i < p.Length; i++)
            p[i] += (float)(0.1 * rng.NextGaussian()); // non-zero biases too
        const int rows = 9;
        var (values, mask) = Rows(layout, rows, seed);
        var eps = new float[rows * net.Latent];
        rng.FillGaussian(eps);
        return (net, p, values, mask, rows, eps);
    }

    public static (double Loss, float[] Gradient) EngineLossAndGradient(
        VaeNetwork net, float[] p, float[] values, float[] mask, int rows, float[] eps, float beta)
    {
        var pass = new VaePass(net, rows, rows);
        fixed (float* pv = values, pm = mask, pp = p)
        {
            pass.LoadRows(pv, pm, 0, rows);
            pass.EncodeInput(rows);
            pass.Encode(pp, rows);
            eps.CopyTo(new Span<float>(pass.Epsilon, rows * net.Latent));
            pass.SampleLatent(rows);
            pass.Decode(pp, rows);
            var (reconstruction, kl) = pass.LossAndGradient(rows, beta, 1f / rows);
            var gradient = new float[net.ParameterCount];
            fixed (float* pg = gradient)
                pass.Backward(pp, pg, rows);
            return ((reconstruction + beta * kl) / rows, gradient);
        }
    }

    /// <summary>How many numeric raw log-variance outputs fall inside / outside the clamp range for this batch.</summary>
    public static (int Inside, int Outside) NumericLogVarClampUse(VaeNetwork net, float[] p, float[] values, float[] mask, int rows, float[] eps)
    {
        var pass = new VaePass(net, rows, rows);
        fixed (float* pv = values, pm = mask, pp = p)
        {
            pass.LoadRows(pv, pm, 0, rows);
            pass.EncodeInput(rows);
            pass.Encode(pp, rows);
            eps.CopyTo(new Span<float>(pass.Epsilon, rows * net.Latent));
            pass.SampleLatent(rows);
            pass.Decode(pp, rows);
        }

        int inside = 0, outside = 0;
        int nNum = net.Layout.NumericFeatures.Count;
        for (int r = 0; r < rows; r++)
        {
            for (int i = 0; i < nNum; i++)
            {
                float raw = pass.Heads[r * net.Layout.HeadWidth + net.Layout.NumericLogVarOffset + i];
                if (raw > net.NumericLogVarMin && raw < net.NumericLogVarMax)
                    inside++;
                else
                    outside++;
            }
        }

        return (inside, outside);
    }

    public static IEnumerable<(string Name, int Offset, int Length)> Tensors(VaeNetwork net)
    {
        for (int i = 0; i < net.Encoder.Length; i++)
        {
            yield return ($"encoder[{i}].W", net.Encoder[i].WeightOffset, net.Encoder[i].Inputs * net.Encoder[i].Outputs);
            yield return ($"encoder[{i}].b", net.Encoder[i].BiasOffset, net.Encoder[i].Outputs);
        }

        for (int i = 0; i < net.Decoder.Length; i++)
        {
            yield return ($"decoder[{i}].W", net.Decoder[i].WeightOffset, net.Decoder[i].Inputs * net.Decoder[i].Outputs);
            yield return ($"decoder[{i}].b", net.Decoder[i].BiasOffset, net.Decoder[i].Outputs);
        }
    }
}
