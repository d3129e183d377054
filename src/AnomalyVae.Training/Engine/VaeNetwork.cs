using AnomalyVae.Model;

namespace AnomalyVae.Training.Engine;

/// <summary>One dense layer's place in the flat parameter vector.</summary>
internal readonly record struct LayerSpec(int Inputs, int Outputs, int WeightOffset, int BiasOffset, Activation Activation, float Alpha);

/// <summary>
/// The VAE's architecture with all parameters in one flat float vector (encoder layers, then decoder layers;
/// per layer W then b). A single vector makes Adam, gradient reduction, best-epoch snapshots and byte-level
/// determinism checks one loop each.
/// </summary>
internal sealed class VaeNetwork
{
    public VaeNetwork(VaeLayout layout, IReadOnlyList<int> hidden, int latent, Activation activation, float alpha,
        float numericLogVarMin = VaeModel.DefaultNumericLogVarMin, float numericLogVarMax = VaeModel.DefaultNumericLogVarMax,
        float latentLogVarMin = VaeModel.DefaultLatentLogVarMin, float latentLogVarMax = VaeModel.DefaultLatentLogVarMax,
        bool perFeatureVariance = false)
    {
        Layout = layout;
        Latent = latent;
        PerFeatureVariance = perFeatureVariance;
        NumericLogVarMin = numericLogVarMin;
        NumericLogVarMax = numericLogVarMax;
        LatentLogVarMin = latentLogVarMin;
        LatentLogVarMax = latentLogVarMax;
        int offset = 0;
        var encoder = new List<LayerSpec>();
        int width = layout.InputWidth;
        foreach (int h in hidden)
        {
            encoder.Add(Add(width, h, activation, alpha, ref offset));
            width = h;
        }

        encoder.Add(Add(width, 2 * latent, Activation.Identity, 0f, ref offset));
        var decoder = new List<LayerSpec>();
        width = latent;
        for (int i = hidden.Count - 1; i >= 0; i--)
        {
            decoder.Add(Add(width, hidden[i], activation, alpha, ref offset));
            width = hidden[i];
        }

        decoder.Add(Add(width, layout.HeadWidth, Activation.Identity, 0f, ref offset));
        Encoder = [.. encoder];
        Decoder = [.. decoder];
        ParameterCount = offset;
    }

    private VaeNetwork(VaeLayout layout, int latent, LayerSpec[] encoder, LayerSpec[] decoder, int count,
        float numericLogVarMin, float numericLogVarMax, float latentLogVarMin, float latentLogVarMax)
    {
        Layout = layout;
        Latent = latent;
        Encoder = encoder;
        Decoder = decoder;
        ParameterCount = count;
        NumericLogVarMin = numericLogVarMin;
        NumericLogVarMax = numericLogVarMax;
        LatentLogVarMin = latentLogVarMin;
        LatentLogVarMax = latentLogVarMax;
    }

    public VaeLayout Layout { get; }

    public int Latent { get; }

    public LayerSpec[] Encoder { get; }

    public LayerSpec[] Decoder { get; }

    public int ParameterCount { get; }

    public float NumericLogVarMin { get; }

    public float NumericLogVarMax { get; }

    public float LatentLogVarMin { get; }

    public float LatentLogVarMax { get; }

    /// <summary>
    /// Whether numeric log-variances are one learned value per feature (the head's log-variance rows keep zero
    /// weights, so only their biases train) rather than a function of the latent code.
    /// </summary>
    public bool PerFeatureVariance { get; }

    /// <summary>Widest layer output (or input), which sizes the ping-pong gradient buffers.</summary>
    public int MaxWidth
    {
        get
        {
            int w = Layout.InputWidth;
            foreach (var l in Encoder)
                w = Math.Max(w, l.Outputs);
            foreach (var l in Decoder)
                w = Math.Max(w, l.Outputs);
            return w;
        }
    }

    /// <summary>Floats of GEMM packing scratch enough for every forward and backward product with up to <paramref name="rows"/> rows.</summary>
    public int GemmScratchLength(int rows)
    {
        int s = 0;
        foreach (var l in Encoder.Concat(Decoder))
        {
            s = Math.Max(s, Gemm.ScratchLength(l.Outputs, l.Inputs)); // forward: B = Wᵀ
            s = Math.Max(s, Gemm.ScratchLength(l.Inputs, l.Outputs)); // dX: B = W
            s = Math.Max(s, Gemm.ScratchLength(l.Inputs, rows)); // dW: B = X
        }

        return s;
    }

    private static LayerSpec Add(int inputs, int outputs, Activation activation, float alpha, ref int offset)
    {
        var spec = new LayerSpec(inputs, outputs, offset, offset + inputs * outputs, activation, alpha);
        offset += inputs * outputs + outputs;
        return spec;
    }

    /// <summary>Initial parameters: He-uniform weights for hidden layers, Glorot-uniform for the linear outputs, zero biases.</summary>
    public void Initialize(Span<float> parameters, ulong seed)
    {
        var rng = new DeterministicRandom(seed, 0x1417);
        foreach (var l in Encoder.Concat(Decoder))
        {
            double gain = l.Activation switch
            {
                Activation.Identity => 1.0,
                Activation.Tanh => 1.0,
                Activation.LeakyRelu => 2.0 / (1.0 + l.Alpha * l.Alpha),
                _ => 2.0,
            };
            double limit = l.Activation == Activation.Identity || l.Activation == Activation.Tanh
                ? Math.Sqrt(6.0 / (l.Inputs + l.Outputs))
                : Math.Sqrt(3.0 * gain / l.Inputs);
            var w = parameters.Slice(l.WeightOffset, l.Inputs * l.Outputs);
            for (int i = 0; i < w.Length; i++)
                w[i] = (float)((2.0 * rng.NextDouble() - 1.0) * limit);
            parameters.Slice(l.BiasOffset, l.Outputs).Clear();
        }
    }

    /// <summary>
    /// Starts the decoder at the data's marginals: each head's bias is set to the per-feature maximum-likelihood
    /// fit over <paramref name="rows"/> (numeric mean and log-variance, binary log-odds, smoothed categorical
    /// log-frequencies) and the head weights are scaled down by <paramref name="weightScale"/>. Training then starts
    /// from the independent-features model instead of from noise, which matters when standardized values are heavy
    /// tailed: random heads start with NLLs in the thousands and spend most of training undoing that.
    /// </summary>
    public void InitializeHeads(Span<float> parameters, float[] values, float[] mask, ReadOnlySpan<int> rows, float weightScale)
    {
        var head = Decoder[^1];
        var layout = Layout;
        int f = layout.FeatureCount;
        var weights = parameters.Slice(head.WeightOffset, head.Inputs * head.Outputs);
        for (int i = 0; i < weights.Length; i++)
            weights[i] *= weightScale;
        if (PerFeatureVariance)
            weights.Slice(layout.NumericLogVarOffset * head.Inputs, layout.NumericIndex.Length * head.Inputs).Clear();
        var bias = parameters.Slice(head.BiasOffset, head.Outputs);
        for (int j = 0; j < f; j++)
        {
            var feature = layout.FeatureArray[j];
            int o = layout.HeadOffsetArray[j];
            double count = 0, sum = 0, sumSquares = 0;
            double[]? categories = feature.Kind == FeatureKind.Categorical ? new double[feature.Categories] : null;
            foreach (int r in rows)
            {
                if (mask[(long)r * f + j] == 0f)
                    continue;
                double x = values[(long)r * f + j];
                count++;
                if (categories is not null)
                {
                    categories[(int)x]++;
                }
                else
                {
                    sum += x;
                    sumSquares += x * x;
                }
            }

            switch (feature.Kind)
            {
                case FeatureKind.Numeric:
                    double mean = count > 0 ? sum / count : 0;
                    double variance = count > 1 ? Math.Max(sumSquares / count - mean * mean, 0) : 1;
                    bias[o] = (float)mean;
                    // Kept inside the clamp (by up to one unit) so the log-variance head still gets gradients.
                    float margin = Math.Min(1f, (NumericLogVarMax - NumericLogVarMin) / 4);
                    bias[layout.NumericLogVarOffset + o] = (float)Math.Clamp(Math.Log(variance + 1e-6), NumericLogVarMin + margin, NumericLogVarMax - margin);
                    break;
                case FeatureKind.Binary:
                    double p = (sum + 0.5) / (count + 1);
                    bias[o] = (float)Math.Log(p / (1 - p));
                    break;
                default:
                    for (int k = 0; k < categories!.Length; k++)
                        bias[o + k] = (float)Math.Log((categories[k] + 0.5) / (count + 0.5 * categories.Length));
                    break;
            }
        }
    }

    /// <summary>Zeroes the gradient of parameters held fixed (the log-variance head weights under per-feature variance).</summary>
    public void ClearFixedGradients(Span<float> gradient)
    {
        if (!PerFeatureVariance)
            return;
        var head = Decoder[^1];
        gradient.Slice(head.WeightOffset + Layout.NumericLogVarOffset * head.Inputs, Layout.NumericIndex.Length * head.Inputs).Clear();
    }

    /// <summary>Copies parameters into the exporter-facing model.</summary>
    public VaeModel ToModel(ReadOnlySpan<float> parameters, float[] noise, ScoreFunction scoreFunction) =>
        new(Layout, Latent, Layers(Encoder, parameters), Layers(Decoder, parameters), noise,
            NumericLogVarMin, NumericLogVarMax, LatentLogVarMin, LatentLogVarMax)
        { ScoreFunction = scoreFunction };

    private static DenseLayer[] Layers(LayerSpec[] specs, ReadOnlySpan<float> p)
    {
        var layers = new DenseLayer[specs.Length];
        for (int i = 0; i < specs.Length; i++)
        {
            var s = specs[i];
            layers[i] = new DenseLayer(s.Inputs, s.Outputs,
                p.Slice(s.WeightOffset, s.Inputs * s.Outputs).ToArray(), p.Slice(s.BiasOffset, s.Outputs).ToArray(),
                s.Activation, s.Alpha);
        }

        return layers;
    }

    /// <summary>Rebuilds the flat form of a model (for scoring and generation).</summary>
    public static VaeNetwork FromModel(VaeModel model, out float[] parameters)
    {
        int offset = 0;
        var encoder = Specs(model.Encoder, ref offset);
        var decoder = Specs(model.Decoder, ref offset);
        parameters = GC.AllocateArray<float>(offset, pinned: true);
        Copy(model.Encoder, encoder, parameters);
        Copy(model.Decoder, decoder, parameters);
        return new VaeNetwork(model.Layout, model.LatentSize, encoder, decoder, offset,
            model.NumericLogVarMin, model.NumericLogVarMax, model.LatentLogVarMin, model.LatentLogVarMax);
    }

    private static LayerSpec[] Specs(IReadOnlyList<DenseLayer> layers, ref int offset)
    {
        var specs = new LayerSpec[layers.Count];
        for (int i = 0; i < layers.Count; i++)
            specs[i] = Add(layers[i].Inputs, layers[i].Outputs, layers[i].Activation, layers[i].Alpha, ref offset);
        return specs;
    }

    private static void Copy(IReadOnlyList<DenseLayer> layers, LayerSpec[] specs, float[] p)
    {
        for (int i = 0; i < layers.Count; i++)
        {
            layers[i].Weights.CopyTo(p, specs[i].WeightOffset);
            layers[i].Bias.CopyTo(p, specs[i].BiasOffset);
        }
    }
}
