namespace AnomalyVae.Model;

/// <summary>How a column is modelled: each kind has its own likelihood head in the VAE's decoder.</summary>
public enum FeatureKind
{
    /// <summary>Real-valued; Gaussian likelihood on the robust-standardized (optionally log-transformed) value.</summary>
    Numeric,

    /// <summary>One of a fixed vocabulary; softmax likelihood. Index 0 is the reserved "unknown" bucket.</summary>
    Categorical,

    /// <summary>0 or 1; Bernoulli likelihood.</summary>
    Binary,
}
