using AnomalyVae.Model;

namespace AnomalyVae.Training.Engine;

/// <summary>
/// Training rows in the shared contract's engine form: <see cref="Values"/> and <see cref="Mask"/> are
/// row-major [Rows, F]. Numeric cells hold standardized z, categorical cells the vocabulary index, binary cells
/// 0/1; mask is 1 for present, 0 for missing (values of missing cells are ignored, NaN included).
/// The arrays are validated once and then used as they are (not copied): do not change them while training.
/// </summary>
public sealed class VaeDataset
{
    public VaeDataset(IReadOnlyList<VaeFeature> features, float[] values, float[] mask, int rows)
    {
        ArgumentNullException.ThrowIfNull(values);
        ArgumentNullException.ThrowIfNull(mask);
        Layout = new VaeLayout(features);
        VaeInput.Validate(Layout, values, mask, rows);
        Values = values;
        Mask = mask;
        Rows = rows;
    }

    /// <summary>Feature layout shared with the model trained on this data.</summary>
    public VaeLayout Layout { get; }

    public IReadOnlyList<VaeFeature> Features => Layout.Features;

    public int FeatureCount => Layout.FeatureCount;

    public int Rows { get; }

    /// <summary>Row-major [Rows, F] values.</summary>
    public float[] Values { get; }

    /// <summary>Row-major [Rows, F] presence mask (1 present, 0 missing).</summary>
    public float[] Mask { get; }
}

/// <summary>Checks of engine-form input (training data and batches to score) with messages that name the cell.</summary>
internal static class VaeInput
{
    /// <summary>Largest |z| accepted for numeric values: the contract clamps standardized values to ±1e4.</summary>
    public const float NumericLimit = 1e4f;

    public static void Validate(VaeLayout layout, ReadOnlySpan<float> values, ReadOnlySpan<float> mask, int rows)
    {
        int f = layout.FeatureCount;
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        long cells = (long)rows * f;
        if (values.Length < cells)
            throw new ArgumentException($"Values hold {values.Length} cells; {rows} rows × {f} features need {cells}.", nameof(values));
        if (mask.Length < cells)
            throw new ArgumentException($"Mask holds {mask.Length} cells; {rows} rows × {f} features need {cells}.", nameof(mask));

        var features = layout.FeatureArray;
        for (int r = 0; r < rows; r++)
        {
            int row = r * f;
            for (int j = 0; j < f; j++)
            {
                float m = mask[row + j];
                if (m == 0f)
                    continue;
                if (m != 1f)
                    throw new ArgumentException($"Row {r}, feature {j}: mask is {m}; it must be 0 (missing) or 1 (present).", nameof(mask));
                float x = values[row + j];
                var feature = features[j];
                switch (feature.Kind)
                {
                    case FeatureKind.Numeric when !float.IsFinite(x) || MathF.Abs(x) > NumericLimit:
                        throw new ArgumentException(
                            $"Row {r}, feature {j} (numeric): value {x} is not a finite standardized value within ±{NumericLimit}.", nameof(values));
                    case FeatureKind.Categorical when !(x >= 0f && x < feature.Categories && x == MathF.Floor(x)):
                        throw new ArgumentException(
                            $"Row {r}, feature {j} (categorical, K={feature.Categories}): value {x} is not a vocabulary index in [0, {feature.Categories}).",
                            nameof(values));
                    case FeatureKind.Binary when x != 0f && x != 1f:
                        throw new ArgumentException($"Row {r}, feature {j} (binary): value {x} is not 0 or 1.", nameof(values));
                }
            }
        }
    }
}
