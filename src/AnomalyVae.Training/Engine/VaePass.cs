using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using AnomalyVae.Model;

namespace AnomalyVae.Training.Engine;

/// <summary>
/// One thread's forward/backward workspace over a block of rows: every buffer is allocated (pinned) up front for
/// a maximum row count, so a training step or a scoring block allocates nothing. The encoder side holds up to
/// <see cref="EncoderRows"/> rows; the decoder side up to <see cref="DecoderRows"/> (scoring decodes L latent
/// samples per row, so there it is rows × L).
/// </summary>
internal sealed unsafe class VaePass
{
    private readonly VaeNetwork _net;
    private readonly VaeLayout _layout;
    private readonly int _f;
    private readonly int _z;
    private readonly List<float[]> _keepAlive = [];

    public VaePass(VaeNetwork network, int encoderRows, int decoderRows)
    {
        _net = network;
        _layout = network.Layout;
        _f = _layout.FeatureCount;
        _z = network.Latent;
        EncoderRows = Math.Max(1, encoderRows);
        DecoderRows = Math.Max(EncoderRows, decoderRows);

        Values = Alloc(EncoderRows * _f);
        Mask = Alloc(EncoderRows * _f);
        Input = Alloc(EncoderRows * _layout.InputWidth);
        EncoderOutputs = new float*[network.Encoder.Length];
        for (int i = 0; i < network.Encoder.Length; i++)
            EncoderOutputs[i] = Alloc(EncoderRows * network.Encoder[i].Outputs);
        EncoderHeadGradient = Alloc(EncoderRows * 2 * _z);
        Sigma = Alloc(EncoderRows * _z);
        Epsilon = Alloc(DecoderRows * _z);
        Latent = Alloc(DecoderRows * _z);
        DecoderOutputs = new float*[network.Decoder.Length];
        for (int i = 0; i < network.Decoder.Length; i++)
            DecoderOutputs[i] = Alloc(DecoderRows * network.Decoder[i].Outputs);
        GradientA = Alloc(DecoderRows * network.MaxWidth);
        GradientB = Alloc(DecoderRows * network.MaxWidth);
        FeatureNll = Alloc(DecoderRows * _f);
        Scratch = Alloc(network.GemmScratchLength(DecoderRows));
        NumericValues = Alloc(_layout.NumericIndex.Length);
        NumericMask = Alloc(_layout.NumericIndex.Length);
        NumericNll = Alloc(_layout.NumericIndex.Length);
    }

    public int EncoderRows { get; }

    public int DecoderRows { get; }

    /// <summary>Raw engine-form values of the loaded rows [rows, F].</summary>
    public float* Values { get; }

    /// <summary>Mask of the loaded rows [rows, F].</summary>
    public float* Mask { get; }

    /// <summary>Encoder input [rows, InputWidth].</summary>
    public float* Input { get; }

    /// <summary>Post-activation output of each encoder layer; the last is [μ | raw log σ²].</summary>
    public float*[] EncoderOutputs { get; }

    /// <summary>σ = exp(½·clamp(raw log σ²)) per row [rows, Z].</summary>
    public float* Sigma { get; }

    /// <summary>Reparameterization noise ε [decoder rows, Z] (filled by the caller for training).</summary>
    public float* Epsilon { get; }

    /// <summary>Latent samples z fed to the decoder [decoder rows, Z].</summary>
    public float* Latent { get; }

    /// <summary>Post-activation output of each decoder layer; the last holds the likelihood heads.</summary>
    public float*[] DecoderOutputs { get; }

    /// <summary>dLoss/d[μ | raw log σ²] [rows, 2Z].</summary>
    public float* EncoderHeadGradient { get; }

    public float* GradientA { get; }

    public float* GradientB { get; }

    /// <summary>Per-feature NLL [decoder rows, F] (0 where missing), filled by <see cref="ComputeFeatureNll"/>.</summary>
    public float* FeatureNll { get; }

    /// <summary>One row's numeric values, mask and NLLs gathered into head order (scratch).</summary>
    private float* NumericValues { get; }

    private float* NumericMask { get; }

    private float* NumericNll { get; }

    /// <summary>GEMM packing scratch.</summary>
    public float* Scratch { get; }

    /// <summary>Encoder head output (μ at [r·2Z + k], raw log σ² at [r·2Z + Z + k]).</summary>
    public float* EncoderHead => EncoderOutputs[^1];

    /// <summary>Decoder head output [decoder rows, HeadWidth].</summary>
    public float* Heads => DecoderOutputs[^1];

    private float* Alloc(int length)
    {
        var array = GC.AllocateArray<float>(Math.Max(length, 1) + 8, pinned: true);
        _keepAlive.Add(array);
        return (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(array));
    }

    /// <summary>Copies rows <paramref name="rowIndex"/> of [*, F] arrays into this pass.</summary>
    public void LoadRows(float* values, float* mask, ReadOnlySpan<int> rowIndex)
    {
        for (int r = 0; r < rowIndex.Length; r++)
        {
            nint src = (nint)rowIndex[r] * _f;
            Buffer.MemoryCopy(values + src, Values + r * _f, _f * 4, _f * 4);
            Buffer.MemoryCopy(mask + src, Mask + r * _f, _f * 4, _f * 4);
        }
    }

    /// <summary>Copies <paramref name="rows"/> consecutive rows starting at <paramref name="first"/>.</summary>
    public void LoadRows(float* values, float* mask, int first, int rows)
    {
        long bytes = (long)rows * _f * 4;
        Buffer.MemoryCopy(values + (nint)first * _f, Values, bytes, bytes);
        Buffer.MemoryCopy(mask + (nint)first * _f, Mask, bytes, bytes);
    }

    /// <summary>Builds the encoder input (encoded values, missing → 0, then the mask) for the loaded rows.</summary>
    public void EncodeInput(int rows)
    {
        int width = _layout.InputWidth;
        var features = _layout.FeatureArray;
        var offsets = _layout.InputOffsetArray;
        int maskOffset = _layout.MaskOffset;
        new Span<float>(Input, rows * width).Clear();
        for (int r = 0; r < rows; r++)
        {
            float* x = Values + r * _f;
            float* m = Mask + r * _f;
            float* input = Input + r * width;
            for (int j = 0; j < _f; j++)
            {
                input[maskOffset + j] = m[j];
                if (m[j] == 0f)
                    continue;
                if (features[j].Kind == FeatureKind.Categorical)
                    input[offsets[j] + (int)x[j]] = 1f;
                else
                    input[offsets[j]] = x[j];
            }
        }
    }

    /// <summary>Runs the encoder on the encoded input and computes σ.</summary>
    public void Encode(float* parameters, int rows)
    {
        float* x = Input;
        for (int i = 0; i < _net.Encoder.Length; i++)
        {
            Dense.Forward(_net.Encoder[i], parameters, x, EncoderOutputs[i], rows, Scratch);
            x = EncoderOutputs[i];
        }

        float* head = EncoderHead;
        for (int r = 0; r < rows; r++)
        {
            for (int k = 0; k < _z; k++)
            {
                float v = Math.Clamp(head[r * 2 * _z + _z + k], _net.LatentLogVarMin, _net.LatentLogVarMax);
                Sigma[r * _z + k] = MathF.Exp(0.5f * v);
            }
        }
    }

    /// <summary>z = μ + σ ⊙ ε, one sample per row, with ε taken from <see cref="Epsilon"/>.</summary>
    public void SampleLatent(int rows)
    {
        float* head = EncoderHead;
        for (int r = 0; r < rows; r++)
        {
            for (int k = 0; k < _z; k++)
                Latent[r * _z + k] = MathF.FusedMultiplyAdd(Sigma[r * _z + k], Epsilon[r * _z + k], head[r * 2 * _z + k]);
        }
    }

    /// <summary>z[r·L + l] = μ_r + σ_r ⊙ ε_l for the model's fixed noise ε [L, Z] (scoring).</summary>
    public void SampleLatent(int rows, float* noise, int samples)
    {
        float* head = EncoderHead;
        for (int r = 0; r < rows; r++)
        {
            for (int l = 0; l < samples; l++)
            {
                float* z = Latent + (r * samples + l) * _z;
                for (int k = 0; k < _z; k++)
                    z[k] = MathF.FusedMultiplyAdd(Sigma[r * _z + k], noise[l * _z + k], head[r * 2 * _z + k]);
            }
        }
    }

    /// <summary>Runs the decoder on <see cref="Latent"/>.</summary>
    public void Decode(float* parameters, int rows)
    {
        float* x = Latent;
        for (int i = 0; i < _net.Decoder.Length; i++)
        {
            Dense.Forward(_net.Decoder[i], parameters, x, DecoderOutputs[i], rows, Scratch);
            x = DecoderOutputs[i];
        }
    }

    /// <summary>Gathers one row's numeric values (0 where missing, whatever the cell holds) and mask into head order.</summary>
    private void GatherNumeric(float* x, float* m)
    {
        var numeric = _layout.NumericIndex;
        for (int i = 0; i < numeric.Length; i++)
        {
            float present = m[numeric[i]];
            NumericMask[i] = present;
            NumericValues[i] = present == 0f ? 0f : x[numeric[i]];
        }
    }

    /// <summary>
    /// Per-row −ELBO = Σ_j m_j·NLL_j + β·KL. Writes dLoss/dHeads (times <paramref name="scale"/>) into
    /// <see cref="GradientA"/> and the KL part of dLoss/d[μ | raw log σ²] into <see cref="EncoderHeadGradient"/>.
    /// Returns the sum over rows of the reconstruction NLL and of the KL (unweighted).
    /// </summary>
    public (double Reconstruction, double Kl) LossAndGradient(int rows, float beta, float scale)
    {
        int p = _layout.HeadWidth;
        var numeric = _layout.NumericIndex;
        var binary = _layout.BinaryIndex;
        var categorical = _layout.CategoricalIndex;
        var headOffsets = _layout.HeadOffsetArray;
        var features = _layout.FeatureArray;
        int nNum = numeric.Length;
        float min = _net.NumericLogVarMin, max = _net.NumericLogVarMax;
        double reconstruction = 0, kl = 0;
        for (int r = 0; r < rows; r++)
        {
            float* h = Heads + r * p;
            float* dh = GradientA + r * p;
            float* x = Values + r * _f;
            float* m = Mask + r * _f;
            GatherNumeric(x, m);

            float rowNll = Likelihood.GaussianRow(NumericValues, NumericMask, h, h + nNum, nNum, min, max, scale, dh, dh + nNum, null);

            for (int i = 0; i < binary.Length; i++)
            {
                int j = binary[i];
                int o = headOffsets[j];
                if (m[j] == 0f)
                {
                    dh[o] = 0f;
                    continue;
                }

                rowNll += Likelihood.Bernoulli(x[j], h[o], out float dLogit);
                dh[o] = dLogit * scale;
            }

            foreach (int j in categorical)
            {
                int o = headOffsets[j];
                int k = features[j].Categories;
                if (m[j] == 0f)
                {
                    new Span<float>(dh + o, k).Clear();
                    continue;
                }

                rowNll += Likelihood.Categorical((int)x[j], new ReadOnlySpan<float>(h + o, k), new Span<float>(dh + o, k), scale);
            }

            float* head = EncoderHead + r * 2 * _z;
            float* dHead = EncoderHeadGradient + r * 2 * _z;
            float rowKl = 0f;
            float klScale = beta * scale;
            for (int k = 0; k < _z; k++)
            {
                rowKl += Likelihood.Kl(head[k], head[_z + k], _net.LatentLogVarMin, _net.LatentLogVarMax, out float dMu, out float dLogVar);
                dHead[k] = dMu * klScale;
                dHead[_z + k] = dLogVar * klScale;
            }

            reconstruction += rowNll;
            kl += rowKl;
        }

        return (reconstruction, kl);
    }

    /// <summary>
    /// Per-feature NLL of the loaded rows under the decoded heads, for <paramref name="samples"/> decoded rows per
    /// loaded row (decoder row r·samples + l belongs to loaded row r). Missing features get 0.
    /// </summary>
    public void ComputeFeatureNll(int rows, int samples)
    {
        int p = _layout.HeadWidth;
        var numeric = _layout.NumericIndex;
        var binary = _layout.BinaryIndex;
        var categorical = _layout.CategoricalIndex;
        var headOffsets = _layout.HeadOffsetArray;
        var features = _layout.FeatureArray;
        int nNum = numeric.Length;
        float min = _net.NumericLogVarMin, max = _net.NumericLogVarMax;
        for (int r = 0; r < rows; r++)
        {
            float* x = Values + r * _f;
            float* m = Mask + r * _f;
            GatherNumeric(x, m);

            for (int l = 0; l < samples; l++)
            {
                int d = r * samples + l;
                float* h = Heads + d * p;
                float* nll = FeatureNll + d * _f;
                Likelihood.GaussianRow(NumericValues, NumericMask, h, h + nNum, nNum, min, max, 0f, null, null, NumericNll);
                for (int i = 0; i < nNum; i++)
                    nll[numeric[i]] = NumericNll[i];

                foreach (int j in binary)
                    nll[j] = m[j] == 0f ? 0f : Likelihood.Bernoulli(x[j], h[headOffsets[j]], out _);
                foreach (int j in categorical)
                {
                    nll[j] = m[j] == 0f
                        ? 0f
                        : Likelihood.Categorical((int)x[j], new ReadOnlySpan<float>(h + headOffsets[j], features[j].Categories));
                }
            }
        }
    }

    /// <summary>
    /// Backpropagates the head gradient in <see cref="GradientA"/> and the KL gradient in
    /// <see cref="EncoderHeadGradient"/> through decoder, reparameterization and encoder into <paramref name="gradient"/>
    /// (laid out like the parameter vector; every entry is overwritten).
    /// </summary>
    public void Backward(float* parameters, float* gradient, int rows)
    {
        float* dy = GradientA;
        float* dx = GradientB;
        for (int i = _net.Decoder.Length - 1; i >= 0; i--)
        {
            float* x = i == 0 ? Latent : DecoderOutputs[i - 1];
            Dense.Backward(_net.Decoder[i], parameters, x, DecoderOutputs[i], dy, dx, rows, gradient, Scratch);
            float* t = dy;
            dy = dx;
            dx = t;
        }

        _net.ClearFixedGradients(new Span<float>(gradient, _net.ParameterCount));

        // dy now holds dLoss/dz [rows, Z]; z = μ + σ·ε with σ = exp(½·clamp(v)).
        float* head = EncoderHead;
        float* dHead = EncoderHeadGradient;
        float min = _net.LatentLogVarMin, max = _net.LatentLogVarMax;
        for (int r = 0; r < rows; r++)
        {
            for (int k = 0; k < _z; k++)
            {
                float dz = dy[r * _z + k];
                dHead[r * 2 * _z + k] += dz;
                float raw = head[r * 2 * _z + _z + k];
                if (raw > min && raw < max)
                    dHead[r * 2 * _z + _z + k] += dz * Epsilon[r * _z + k] * 0.5f * Sigma[r * _z + k];
            }
        }

        // dz is consumed: both ping-pong buffers are free for the encoder.
        dy = EncoderHeadGradient;
        dx = GradientA;
        float* spare = GradientB;
        for (int i = _net.Encoder.Length - 1; i >= 0; i--)
        {
            float* x = i == 0 ? Input : EncoderOutputs[i - 1];
            Dense.Backward(_net.Encoder[i], parameters, x, EncoderOutputs[i], dy, i == 0 ? null : dx, rows, gradient, Scratch);
            dy = dx;
            dx = spare;
            spare = dy;
        }
    }
}
