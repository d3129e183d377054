using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using AnomalyVae.Model;

namespace AnomalyVae.Training.Engine;

/// <summary>
/// Generative use of a trained model (for `sample` and `interpolate`): encode rows to the latent posterior, decode
/// latent vectors to likelihood parameters, and draw rows from those likelihoods. Values are in engine form
/// (numeric = standardized z; categorical = vocabulary index; binary = 0/1); turning z back into original units is
/// the feature schema's job. Single-threaded; allocates nothing per call.
/// </summary>
public sealed unsafe class VaeSampler
{
    private const int BlockRows = 64;

    private readonly VaeNetwork _network;
    private readonly float[] _parameters;
    private readonly VaePass _pass;

    public VaeSampler(VaeModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        Model = model;
        _network = VaeNetwork.FromModel(model, out _parameters);
        _pass = new VaePass(_network, BlockRows, BlockRows);
    }

    public VaeModel Model { get; }

    private VaeLayout Layout => _network.Layout;

    private float* Parameters => (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_parameters));

    /// <summary>
    /// Posterior of each row: <paramref name="mean"/> μ and <paramref name="logVariance"/> (clamped log σ²), both
    /// [rows, LatentSize] with rows = mean.Length / LatentSize.
    /// </summary>
    public void Encode(ReadOnlySpan<float> values, ReadOnlySpan<float> mask, Span<float> mean, Span<float> logVariance)
    {
        int z = _network.Latent;
        int rows = mean.Length / z;
        if (mean.Length != rows * z || logVariance.Length != mean.Length)
            throw new ArgumentException($"mean and logVariance must both hold rows × {z} values.");
        VaeInput.Validate(Layout, values, mask, rows);
        fixed (float* v = values)
        fixed (float* m = mask)
        {
            for (int first = 0; first < rows; first += BlockRows)
            {
                int n = Math.Min(BlockRows, rows - first);
                _pass.LoadRows(v, m, first, n);
                _pass.EncodeInput(n);
                _pass.Encode(Parameters, n);
                for (int r = 0; r < n; r++)
                {
                    for (int k = 0; k < z; k++)
                    {
                        mean[(first + r) * z + k] = _pass.EncoderHead[r * 2 * z + k];
                        logVariance[(first + r) * z + k] = Math.Clamp(_pass.EncoderHead[r * 2 * z + z + k],
                            _network.LatentLogVarMin, _network.LatentLogVarMax);
                    }
                }
            }
        }
    }

    /// <summary>
    /// Decodes latent vectors [rows, LatentSize] into likelihood parameters [rows, HeadWidth] laid out as
    /// <see cref="VaeLayout"/> describes, with numeric log-variances already clamped.
    /// </summary>
    public void Decode(ReadOnlySpan<float> latent, Span<float> heads)
    {
        int z = _network.Latent;
        int p = Layout.HeadWidth;
        int rows = latent.Length / z;
        if (latent.Length != rows * z || heads.Length != rows * p)
            throw new ArgumentException($"latent must hold rows × {z} values and heads rows × {p}.");
        for (int first = 0; first < rows; first += BlockRows)
        {
            int n = Math.Min(BlockRows, rows - first);
            DecodeBlock(latent.Slice(first * z, n * z), n);
            new ReadOnlySpan<float>(_pass.Heads, n * p).CopyTo(heads.Slice(first * p, n * p));
        }
    }

    /// <summary>
    /// Draws one row per latent vector into <paramref name="values"/> [rows, F]: numeric mean + σ·N(0, 1) (or the mean
    /// alone when <paramref name="numericMeanOnly"/>), categorical from the softmax (index 0, "unknown", included),
    /// binary from the Bernoulli. Deterministic for a given <paramref name="seed"/>.
    /// </summary>
    public void Sample(ReadOnlySpan<float> latent, Span<float> values, int seed, bool numericMeanOnly = false)
    {
        int z = _network.Latent;
        int f = Layout.FeatureCount;
        int rows = latent.Length / z;
        if (latent.Length != rows * z || values.Length != rows * f)
            throw new ArgumentException($"latent must hold rows × {z} values and values rows × {f}.");
        var features = Layout.FeatureArray;
        var offsets = Layout.HeadOffsetArray;
        int p = Layout.HeadWidth;
        int logVarOffset = Layout.NumericLogVarOffset;
        for (int first = 0; first < rows; first += BlockRows)
        {
            int n = Math.Min(BlockRows, rows - first);
            DecodeBlock(latent.Slice(first * z, n * z), n);
            for (int r = 0; r < n; r++)
            {
                var rng = new DeterministicRandom((ulong)(uint)seed, 0x5A3, (ulong)(first + r));
                float* h = _pass.Heads + r * p;
                var row = values.Slice((first + r) * f, f);
                for (int j = 0; j < f; j++)
                {
                    int o = offsets[j];
                    row[j] = features[j].Kind switch
                    {
                        FeatureKind.Numeric => numericMeanOnly
                            ? h[o]
                            : h[o] + MathF.Exp(0.5f * h[logVarOffset + o]) * (float)rng.NextGaussian(),
                        FeatureKind.Binary => rng.NextDouble() < 1.0 / (1.0 + Math.Exp(-h[o])) ? 1f : 0f,
                        _ => SampleCategory(new ReadOnlySpan<float>(h + o, features[j].Categories), ref rng),
                    };
                }
            }
        }
    }

    private void DecodeBlock(ReadOnlySpan<float> latent, int rows)
    {
        latent.CopyTo(new Span<float>(_pass.Latent, latent.Length));
        _pass.Decode(Parameters, rows);
        int p = Layout.HeadWidth;
        int nNum = Layout.NumericIndex.Length;
        for (int r = 0; r < rows; r++)
        {
            float* h = _pass.Heads + r * p + nNum;
            for (int i = 0; i < nNum; i++)
                h[i] = Math.Clamp(h[i], _network.NumericLogVarMin, _network.NumericLogVarMax);
        }
    }

    private static float SampleCategory(ReadOnlySpan<float> logits, ref DeterministicRandom rng)
    {
        float max = logits[0];
        for (int k = 1; k < logits.Length; k++)
            max = MathF.Max(max, logits[k]);
        double sum = 0;
        for (int k = 0; k < logits.Length; k++)
            sum += Math.Exp(logits[k] - max);
        double u = rng.NextDouble() * sum;
        for (int k = 0; k < logits.Length - 1; k++)
        {
            u -= Math.Exp(logits[k] - max);
            if (u < 0)
                return k;
        }

        return logits.Length - 1;
    }
}
