using AnomalyVae.Model;
using AnomalyVae.Training.Engine;

namespace AnomalyVae.UnitTests.Training;

/// <summary>
/// An independent, plain double-precision implementation of the VAE loss (no GEMM, no SIMD, no shared code with the
/// engine beyond the architecture description), used as ground truth for values and finite differences.
/// </summary>
internal static class ReferenceVae
{
    public static double Activate(Activation activation, double alpha, double x) => activation switch
    {
        Activation.Identity => x,
        Activation.Relu => Math.Max(x, 0),
        Activation.LeakyRelu => x > 0 ? x : alpha * x,
        Activation.Tanh => Math.Tanh(x),
        Activation.Elu => x > 0 ? x : alpha * (Math.Exp(x) - 1),
        Activation.Softplus => Math.Log(1 + Math.Exp(x)),
        _ => throw new ArgumentOutOfRangeException(nameof(activation)),
    };

    public static double[] DenseForward(LayerSpec layer, double[] p, double[] x)
    {
        var y = new double[layer.Outputs];
        for (int o = 0; o < layer.Outputs; o++)
        {
            double s = p[layer.BiasOffset + o];
            for (int i = 0; i < layer.Inputs; i++)
                s += p[layer.WeightOffset + o * layer.Inputs + i] * x[i];
            y[o] = Activate(layer.Activation, layer.Alpha, s);
        }

        return y;
    }

    public static double Gaussian(double x, double mean, double rawLogVar, double min, double max)
    {
        double v = Math.Clamp(rawLogVar, min, max);
        double r = x - mean;
        return 0.5 * Math.Log(2 * Math.PI) + 0.5 * v + 0.5 * r * r * Math.Exp(-v);
    }

    public static double Categorical(int index, double[] logits)
    {
        double max = logits.Max();
        return max + Math.Log(logits.Sum(l => Math.Exp(l - max))) - logits[index];
    }

    public static double Bernoulli(double x, double logit) =>
        Math.Max(logit, 0) + Math.Log(1 + Math.Exp(-Math.Abs(logit))) - x * logit;

    public static double Kl(double mu, double rawLogVar, double min, double max)
    {
        double v = Math.Clamp(rawLogVar, min, max);
        return 0.5 * (mu * mu + Math.Exp(v) - 1 - v);
    }

    /// <summary>Mean over rows of Σ_j m_j·NLL_j + β·KL, with ε [rows, Z] fixed.</summary>
    public static double Loss(VaeNetwork net, double[] p, float[] values, float[] mask, int rows, float[] eps, double beta)
    {
        var layout = net.Layout;
        int f = layout.FeatureCount, z = net.Latent;
        double total = 0;
        for (int r = 0; r < rows; r++)
        {
            var input = new double[layout.InputWidth];
            for (int j = 0; j < f; j++)
            {
                double m = mask[r * f + j];
                input[layout.MaskOffset + j] = m;
                if (m == 0)
                    continue;
                double x = values[r * f + j];
                if (layout.Features[j].Kind == FeatureKind.Categorical)
                    input[layout.InputOffsets[j] + (int)x] = 1;
                else
                    input[layout.InputOffsets[j]] = x;
            }

            var h = input;
            foreach (var l in net.Encoder)
                h = DenseForward(l, p, h);
            var latent = new double[z];
            double kl = 0;
            for (int k = 0; k < z; k++)
            {
                double v = Math.Clamp(h[z + k], net.LatentLogVarMin, net.LatentLogVarMax);
                latent[k] = h[k] + Math.Exp(0.5 * v) * eps[r * z + k];
                kl += Kl(h[k], h[z + k], net.LatentLogVarMin, net.LatentLogVarMax);
            }

            h = latent;
            foreach (var l in net.Decoder)
                h = DenseForward(l, p, h);

            double nll = 0;
            for (int j = 0; j < f; j++)
            {
                if (mask[r * f + j] == 0)
                    continue;
                double x = values[r * f + j];
                int o = layout.HeadOffsets[j];
                nll += layout.Features[j].Kind switch
                {
                    FeatureKind.Numeric => Gaussian(x, h[o], h[layout.NumericLogVarOffset + o], net.NumericLogVarMin, net.NumericLogVarMax),
                    FeatureKind.Binary => Bernoulli(x, h[o]),
                    _ => Categorical((int)x, h[o..(o + layout.Features[j].Categories)]),
                };
            }

            total += nll + beta * kl;
        }

        return total / rows;
    }
}
