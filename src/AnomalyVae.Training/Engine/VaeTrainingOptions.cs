namespace AnomalyVae.Training.Engine;

/// <summary>How the Gaussian heads of numeric features get their variance.</summary>
public enum NumericVariance
{
    /// <summary>
    /// One learned log-variance per feature (homoscedastic). The decoder still outputs a log-variance per row (its
    /// weights are zero, its bias is the learned value), so the exported graph is the same. Default: a per-row
    /// variance lets the model "explain" an anomalous value by predicting a large variance for that row.
    /// </summary>
    PerFeature,

    /// <summary>Log-variance predicted from the latent code for each row (heteroscedastic).</summary>
    PerRow,
}

/// <summary>
/// Training settings. Null members are derived from the data by <see cref="Resolve"/>, with rules chosen to work
/// untuned on tables of a few to a few hundred features and thousands to millions of rows. The rules and why:
/// docs/engine.md, "Training".
/// </summary>
public sealed record VaeTrainingOptions
{
    /// <summary>Upper bound of the default epoch rule.</summary>
    public const int MaxDefaultEpochs = 3000;

    /// <summary>Most VAEs one model may hold (<see cref="Ensemble"/>).</summary>
    public const int MaxEnsemble = 16;

    /// <summary>Encoder hidden widths (the decoder uses them reversed).</summary>
    public int[]? Hidden { get; init; }

    /// <summary>Latent dimension.</summary>
    public int? Latent { get; init; }

    /// <summary>
    /// Weight of the KL term (β-VAE); 1 is the true ELBO. 0.5 by default: on the ADBench suite (docs/quality.md) it
    /// raised mean AUROC from 0.857 to 0.875 with the tail squash, with cardio (0.940) and the dependency-anomaly
    /// synthetic tables unchanged; 0.25 scored higher on the suite but lost cardio and the mixed synthetic table, and
    /// β ≥ 2 collapses the posterior on data whose anomalies break dependencies.
    /// </summary>
    public float Beta { get; init; } = 0.5f;

    /// <summary>Maximum number of epochs.</summary>
    public int? Epochs { get; init; }

    public int? BatchSize { get; init; }

    /// <summary>Adam step size.</summary>
    public float LearningRate { get; init; } = 1e-3f;

    /// <summary>Decoupled (AdamW) weight decay per step, as a fraction of the learning rate; 0 disables it.</summary>
    public float WeightDecay { get; init; }

    /// <summary>Seed of every random choice: split, shuffles, initial weights, training and scoring noise.</summary>
    public int Seed { get; init; } = 42;

    /// <summary>Worker threads. Results are bit-identical for the same data, seed and thread count.</summary>
    public int? Threads { get; init; }

    /// <summary>Fraction of rows held out for validation and early stopping (0 disables both).</summary>
    public double ValidationFraction { get; init; } = 0.1;

    /// <summary>
    /// The rows that validate, instead of a seeded random <see cref="ValidationFraction"/> (null). A windowed model
    /// holds out each entity's latest events, so no held-out step is ever inside a training window.
    /// </summary>
    public IReadOnlyList<int>? ValidationRowIndices { get; init; }

    /// <summary>Epochs without a new best validation −ELBO before stopping (counted after KL warm-up).</summary>
    public int? Patience { get; init; }

    /// <summary>Epochs over which β ramps linearly up to <see cref="Beta"/> (0 = no warm-up).</summary>
    public int? KlWarmupEpochs { get; init; }

    /// <summary>
    /// L, latent samples per row when scoring (stored in the model as fixed noise). Scoring cost is linear in L (the
    /// decoder runs once per sample). 4 by default: measured as good as 16 on cardio (mean AUROC 0.948 vs 0.946),
    /// the synthetic sensor fleet (0.966 vs 0.965) and card payments (0.910 vs 0.901), at a quarter of the cost
    /// (one VAE of the benchmark model: 2.8–3.2 µs/row instead of 13–14, 2026-12-06, 2 cores); L = 1 was slightly worse.
    /// </summary>
    public int ScoringSamples { get; init; } = 4;

    /// <summary>
    /// Hidden-layer activation. Tanh by default: bounded units keep the decoder from extrapolating linearly, so
    /// values far outside the training range are not reconstructed (and so score as anomalous); it is smooth, exports
    /// as one ONNX op, and measured best on cardio and on synthetic dependency anomalies (see the engine notes).
    /// </summary>
    public Activation Activation { get; init; } = Activation.Tanh;

    /// <summary>Negative slope of LeakyRelu / alpha of Elu.</summary>
    public float ActivationAlpha { get; init; } = 0.1f;

    /// <summary>How the numeric heads' variance is modelled (per feature by default).</summary>
    public NumericVariance NumericVariance { get; init; } = NumericVariance.PerFeature;

    /// <summary>
    /// K, VAEs trained per model (seeds <see cref="Seed"/> and Seed·1000 + m; none trains on the rows that calibrate,
    /// each early-stops on its own: Export/VaeEnsemble) whose reconstruction probabilities are averaged in the one
    /// exported graph: score = −log (1/K)·Σ_k p̂_k(x). 2 by default: on the ADBench suite two members raised mean
    /// AUROC / AUPRC from 0.875 / 0.692 to 0.884 / 0.698 with the calibration as honest as one VAE's and cardio and the
    /// synthetic tables kept (docs/quality.md, "Ensemble"). Training and scoring cost grow K-fold. Windowed models
    /// train one VAE whatever K says. <see cref="VaeTrainer"/> trains one VAE; Trainer reads K.
    /// </summary>
    public int Ensemble { get; init; } = 2;

    /// <summary>
    /// What the trained model scores (<see cref="Engine.ScoreFunction"/>): the reconstruction probability by default;
    /// the −ELBO is opt-in (docs/quality.md, "The −ELBO and the quantile map": it lifts tables whose anomalies are
    /// shifted marginals, which the reconstruction probability's latent code explains away, and did not win the suite
    /// mean). Windowed models score the reconstruction probability only (Trainer refuses the −ELBO for them).
    /// </summary>
    public ScoreFunction ScoreFunction { get; init; }

    /// <summary>Clamp range of the numeric heads' log-variance (standardized units).</summary>
    public float NumericLogVarMin { get; init; } = VaeModel.DefaultNumericLogVarMin;

    /// <inheritdoc cref="NumericLogVarMin"/>
    public float NumericLogVarMax { get; init; } = VaeModel.DefaultNumericLogVarMax;

    /// <summary>
    /// Donut's missing-data injection (Xu et al. 2018): during training each group of
    /// <see cref="MissingInjectionGroup"/> consecutive inputs is marked missing with this probability, drawn afresh
    /// every step (validation never). A windowed model's group is one step (its F features), so the model learns to
    /// reconstruct a window whose history has gaps, which is what scoring with flagged steps masked gives it.
    /// null: the caller's rule (<see cref="Trainer"/> uses <see cref="AnomalyVae.Model.WindowDefinition.DefaultMissingInjection"/> for
    /// windows, 0 for single-event tables); 0: off.
    /// </summary>
    public float? MissingInjectionRate { get; init; }

    /// <summary>Inputs masked together by <see cref="MissingInjectionRate"/> (a window's F; 1: each value alone).</summary>
    public int MissingInjectionGroup { get; init; } = 1;

    /// <summary>Fills every null member by the documented rule and checks all values; throws on invalid settings.</summary>
    public VaeTrainingOptions Resolve(int rows, VaeLayout layout)
    {
        ArgumentNullException.ThrowIfNull(layout);
        int trainRows = Math.Max(1, rows - (ValidationRowIndices?.Count ?? ValidationRows(rows)));
        int d = layout.InputWidth;
        int[] hidden = Hidden ?? DefaultHidden(d);
        int latent = Latent ?? Math.Clamp((layout.FeatureCount + 2) / 3, 2, 32);
        int batch = BatchSize ?? DefaultBatch(trainRows);
        int stepsPerEpoch = Math.Max(1, (trainRows + batch - 1) / batch);
        int epochs = Epochs ?? Math.Clamp((20_000 + stepsPerEpoch - 1) / stepsPerEpoch, 3, MaxDefaultEpochs);
        var resolved = this with
        {
            Hidden = hidden,
            Latent = latent,
            BatchSize = batch,
            Epochs = epochs,
            Patience = Patience ?? Math.Clamp(epochs / 10, 5, 20),
            KlWarmupEpochs = KlWarmupEpochs ?? Math.Min(10, epochs / 10),
            Threads = Threads ?? Math.Clamp(Math.Min(Environment.ProcessorCount, batch / 128), 1, 8),
        };
        resolved.Check();
        return resolved;
    }

    /// <summary>Rows held out for validation out of <paramref name="rows"/>.</summary>
    public int ValidationRows(int rows) =>
        ValidationFraction <= 0 || rows < 2 ? 0 : Math.Clamp((int)Math.Round(rows * ValidationFraction), 1, rows - 1);

    private static int[] DefaultHidden(int inputWidth) => [RoundUp8(Math.Clamp(2 * inputWidth, 32, 512))];

    private static int DefaultBatch(int trainRows)
    {
        if (trainRows >= 256 * 32)
            return 256;
        int target = Math.Max(32, trainRows / 32);
        int pow = 32;
        while (pow * 2 <= target)
            pow *= 2;
        // nearest power of two
        return target - pow > pow * 2 - target ? pow * 2 : pow;
    }

    private static int RoundUp8(int v) => (v + 7) / 8 * 8;

    private void Check()
    {
        if (Hidden is null || Hidden.Length == 0 || Hidden.Any(h => h < 1 || h > 65_536))
            throw new ArgumentException("Hidden must list at least one layer width, each in [1, 65536].");
        Require(Latent is >= 1 and <= 4096, "Latent must be in [1, 4096].");
        Require(float.IsFinite(Beta) && Beta >= 0, "Beta must be a finite number ≥ 0.");
        Require(Epochs >= 1, "Epochs must be ≥ 1.");
        Require(BatchSize is >= 1 and <= 1 << 20, "BatchSize must be in [1, 1048576].");
        Require(float.IsFinite(LearningRate) && LearningRate > 0, "LearningRate must be a finite number > 0.");
        Require(float.IsFinite(WeightDecay) && WeightDecay >= 0, "WeightDecay must be a finite number ≥ 0.");
        Require(Threads is >= 1 and <= 256, "Threads must be in [1, 256].");
        Require(ValidationFraction is >= 0 and < 1, "ValidationFraction must be in [0, 1).");
        Require(Patience >= 1, "Patience must be ≥ 1.");
        Require(KlWarmupEpochs >= 0, "KlWarmupEpochs must be ≥ 0.");
        Require(MissingInjectionRate is null || (float.IsFinite(MissingInjectionRate.Value) && MissingInjectionRate is >= 0 and < 1), "MissingInjectionRate must be in [0, 1).");
        Require(MissingInjectionGroup >= 1, "MissingInjectionGroup must be ≥ 1.");
        Require(ScoringSamples is >= 1 and <= 4096, "ScoringSamples must be in [1, 4096].");
        Require(Ensemble is >= 1 and <= MaxEnsemble, $"Ensemble must be in [1, {MaxEnsemble}].");
        Require(Enum.IsDefined(Activation), "Activation is not a known activation.");
        Require(Enum.IsDefined(NumericVariance), "NumericVariance is not a known choice.");
        Require(float.IsFinite(ActivationAlpha) && ActivationAlpha >= 0, "ActivationAlpha must be a finite number ≥ 0.");
        Require(float.IsFinite(NumericLogVarMin) && float.IsFinite(NumericLogVarMax) && NumericLogVarMin < NumericLogVarMax,
            "NumericLogVarMin must be below NumericLogVarMax.");
    }

    private static void Require(bool condition, string message)
    {
        if (!condition)
            throw new ArgumentException(message);
    }
}
