namespace AnomalyVae.Training.Engine;

/// <summary>
/// What a VAE's score is, in nats (higher = more anomalous); both use the model's L fixed latent samples
/// z_l = μ + σ·ε_l of q(z | x). When the opt-in −ELBO helps and what it costs: docs/quality.md, "The −ELBO and the
/// quantile map".
/// </summary>
public enum ScoreFunction
{
    /// <summary>
    /// −log (1/L)·Σ_l p(x | z_l): An &amp; Cho's reconstruction probability. Windowed models, and every model file
    /// written before 2026-12-06 (their files carry no score function).
    /// </summary>
    ReconstructionProbability,

    /// <summary>
    /// −ELBO = (1/L)·Σ_l −log p(x | z_l) + KL(q(z | x) ‖ N(0, I)): the reconstruction term plus how far the row's
    /// latent code lies from the prior, so a row the encoder can only explain with an unusual code scores high too.
    /// </summary>
    NegativeElbo,
}
