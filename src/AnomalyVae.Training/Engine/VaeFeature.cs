using AnomalyVae.Model;

namespace AnomalyVae.Training.Engine;

/// <summary>
/// What the engine needs to know about one input column: its kind and, for categoricals, the vocabulary size
/// K (which includes index 0, the "unknown" bucket). Values follow the shared contract: numeric columns hold
/// the standardized z, categoricals the vocabulary index as a float, binaries 0 or 1.
/// </summary>
public readonly record struct VaeFeature(FeatureKind Kind, int Categories = 0)
{
    /// <summary>A numeric feature (Gaussian head on standardized z).</summary>
    public static VaeFeature Numeric() => new(FeatureKind.Numeric);

    /// <summary>A binary feature (Bernoulli head).</summary>
    public static VaeFeature Binary() => new(FeatureKind.Binary);

    /// <summary>A categorical feature with <paramref name="categories"/> indices, 0 being "unknown".</summary>
    public static VaeFeature Categorical(int categories) => new(FeatureKind.Categorical, categories);

    /// <summary>Columns this feature occupies in the encoder input (one-hot width for categoricals).</summary>
    public int InputWidth => Kind == FeatureKind.Categorical ? Categories : 1;

    /// <summary>Throws when the description is unusable (unknown kind, categorical with fewer than 2 categories).</summary>
    public void Validate(int index)
    {
        switch (Kind)
        {
            case FeatureKind.Numeric:
            case FeatureKind.Binary:
                break;
            case FeatureKind.Categorical when Categories >= 2:
                break;
            case FeatureKind.Categorical:
                throw new ArgumentException(
                    $"Feature {index} is categorical with {Categories} categories; at least 2 are needed (index 0 is the unknown bucket).");
            default:
                throw new ArgumentException($"Feature {index} has unknown kind {(int)Kind}.");
        }
    }
}
