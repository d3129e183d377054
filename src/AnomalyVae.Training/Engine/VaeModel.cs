namespace AnomalyVae.Training.Engine;

/// <summary>
/// A fully connected layer y = act(W·x + b). <see cref="Weights"/> is row-major [Outputs, Inputs] (ONNX Gemm with
/// transB = 1 takes it as is), <see cref="Bias"/> has <see cref="Outputs"/> values. <see cref="Alpha"/> is the
/// negative slope of LeakyRelu or the alpha of Elu (ignored otherwise).
/// </summary>
public sealed record DenseLayer(int Inputs, int Outputs, float[] Weights, float[] Bias, Activation Activation, float Alpha)
{
    internal void Validate(string name)
    {
        if (Inputs < 1 || Outputs < 1)
            throw new ArgumentException($"{name}: sizes {Outputs}×{Inputs} must be positive.");
        if (Weights is null || Weights.Length != Inputs * Outputs)
            throw new ArgumentException($"{name}: weights must hold {Outputs}×{Inputs} = {Inputs * Outputs} values.");
        if (Bias is null || Bias.Length != Outputs)
            throw new ArgumentException($"{name}: bias must hold {Outputs} values.");
    }
}

/// <summary>
/// A trained VAE in the plain form the ONNX exporter and the C# scorer consume: encoder and decoder layers, the latent
/// and numeric log-variance clamps, and the fixed scoring noise <see cref="Noise"/>. Layout, clamps and likelihoods:
/// docs/engine.md, "Model" and "Scoring".
/// </summary>
public sealed class VaeModel
{
    /// <summary>Default numeric log-variance range: σ between e^-3 ≈ 0.05 and e^2 ≈ 7.4 standardized units.</summary>
    public const float DefaultNumericLogVarMin = -6f;

    /// <inheritdoc cref="DefaultNumericLogVarMin"/>
    public const float DefaultNumericLogVarMax = 4f;

    /// <summary>Latent log-variance range: a guard against exp overflow, far outside what training reaches.</summary>
    public const float DefaultLatentLogVarMin = -16f;

    /// <inheritdoc cref="DefaultLatentLogVarMin"/>
    public const float DefaultLatentLogVarMax = 8f;

    public VaeModel(
        VaeLayout layout,
        int latentSize,
        IReadOnlyList<DenseLayer> encoder,
        IReadOnlyList<DenseLayer> decoder,
        float[] noise,
        float numericLogVarMin = DefaultNumericLogVarMin,
        float numericLogVarMax = DefaultNumericLogVarMax,
        float latentLogVarMin = DefaultLatentLogVarMin,
        float latentLogVarMax = DefaultLatentLogVarMax)
    {
        ArgumentNullException.ThrowIfNull(layout);
        ArgumentNullException.ThrowIfNull(encoder);
        ArgumentNullException.ThrowIfNull(decoder);
        ArgumentNullException.ThrowIfNull(noise);
        ArgumentOutOfRangeException.ThrowIfLessThan(latentSize, 1);
        if (encoder.Count == 0 || decoder.Count == 0)
            throw new ArgumentException("Encoder and decoder need at least one layer each.");
        if (!(numericLogVarMin < numericLogVarMax) || !(latentLogVarMin < latentLogVarMax))
            throw new ArgumentException("Log-variance ranges must have min < max.");
        CheckChain(encoder, layout.InputWidth, 2 * latentSize, "encoder");
        CheckChain(decoder, latentSize, layout.HeadWidth, "decoder");
        if (noise.Length == 0 || noise.Length % latentSize != 0)
            throw new ArgumentException($"Noise must hold L × {latentSize} values with L ≥ 1; it holds {noise.Length}.", nameof(noise));

        Layout = layout;
        LatentSize = latentSize;
        Encoder = [.. encoder];
        Decoder = [.. decoder];
        Noise = noise;
        NumericLogVarMin = numericLogVarMin;
        NumericLogVarMax = numericLogVarMax;
        LatentLogVarMin = latentLogVarMin;
        LatentLogVarMax = latentLogVarMax;
    }

    /// <summary>Feature descriptors, encoder-input layout and decoder head layout.</summary>
    public VaeLayout Layout { get; }

    public IReadOnlyList<VaeFeature> Features => Layout.Features;

    /// <summary>Dimension of the latent space.</summary>
    public int LatentSize { get; }

    /// <summary>Encoder layers; the last one outputs [μ | log σ²] (2·LatentSize, linear).</summary>
    public IReadOnlyList<DenseLayer> Encoder { get; }

    /// <summary>Decoder layers; the last one outputs the likelihood heads (HeadWidth, linear).</summary>
    public IReadOnlyList<DenseLayer> Decoder { get; }

    /// <summary>Fixed standard-normal scoring noise ε, row-major [NoiseSamples, LatentSize].</summary>
    public float[] Noise { get; }

    /// <summary>L, the number of latent samples used for scoring.</summary>
    public int NoiseSamples => Noise.Length / LatentSize;

    public float NumericLogVarMin { get; }

    public float NumericLogVarMax { get; }

    public float LatentLogVarMin { get; }

    public float LatentLogVarMax { get; }

    /// <summary>What <see cref="VaeScorer"/> and the exported graph compute as the score.</summary>
    public ScoreFunction ScoreFunction { get; init; }

    private static void CheckChain(IReadOnlyList<DenseLayer> layers, int inputs, int outputs, string name)
    {
        int width = inputs;
        for (int i = 0; i < layers.Count; i++)
        {
            var layer = layers[i] ?? throw new ArgumentException($"{name} layer {i} is null.");
            layer.Validate($"{name} layer {i}");
            if (layer.Inputs != width)
                throw new ArgumentException($"{name} layer {i} takes {layer.Inputs} inputs but receives {width}.");
            width = layer.Outputs;
        }

        if (width != outputs)
            throw new ArgumentException($"{name} ends with {width} outputs; {outputs} are needed.");
        if (layers[^1].Activation != Activation.Identity)
            throw new ArgumentException($"The last {name} layer must be linear (Identity).");
    }
}
