using AnomalyVae.Model;

namespace AnomalyVae.Training.Engine;

/// <summary>
/// Where each feature lives in the encoder input (encoded values in schema order, then the F mask values) and in the
/// decoder output (the likelihood "heads", grouped by kind). The exact layout: docs/engine.md, "Model".
/// </summary>
public sealed class VaeLayout
{
    internal readonly VaeFeature[] FeatureArray;
    internal readonly int[] InputOffsetArray;
    internal readonly int[] HeadOffsetArray;
    internal readonly int[] NumericIndex;
    internal readonly int[] BinaryIndex;
    internal readonly int[] CategoricalIndex;

    public VaeLayout(IReadOnlyList<VaeFeature> features)
    {
        ArgumentNullException.ThrowIfNull(features);
        if (features.Count == 0)
            throw new ArgumentException("At least one feature is needed.", nameof(features));
        FeatureArray = [.. features];
        for (int j = 0; j < FeatureArray.Length; j++)
            FeatureArray[j].Validate(j);

        int f = FeatureArray.Length;
        InputOffsetArray = new int[f];
        int offset = 0;
        for (int j = 0; j < f; j++)
        {
            InputOffsetArray[j] = offset;
            offset += FeatureArray[j].InputWidth;
        }

        MaskOffset = offset;
        InputWidth = offset + f;

        NumericIndex = Indices(FeatureKind.Numeric);
        BinaryIndex = Indices(FeatureKind.Binary);
        CategoricalIndex = Indices(FeatureKind.Categorical);
        NumericLogVarOffset = NumericIndex.Length;
        BinaryLogitOffset = 2 * NumericIndex.Length;
        CategoricalLogitOffset = BinaryLogitOffset + BinaryIndex.Length;

        HeadOffsetArray = new int[f];
        for (int i = 0; i < NumericIndex.Length; i++)
            HeadOffsetArray[NumericIndex[i]] = i;
        for (int i = 0; i < BinaryIndex.Length; i++)
            HeadOffsetArray[BinaryIndex[i]] = BinaryLogitOffset + i;
        int head = CategoricalLogitOffset;
        foreach (int j in CategoricalIndex)
        {
            HeadOffsetArray[j] = head;
            head += FeatureArray[j].Categories;
        }

        HeadWidth = head;
    }

    /// <summary>The features, in schema order.</summary>
    public IReadOnlyList<VaeFeature> Features => FeatureArray;

    /// <summary>F, the number of features.</summary>
    public int FeatureCount => FeatureArray.Length;

    /// <summary>Width of the encoder input: Σ feature input widths + F mask columns.</summary>
    public int InputWidth { get; }

    /// <summary>Column of feature 0's mask value in the encoder input (mask of feature j is at MaskOffset + j).</summary>
    public int MaskOffset { get; }

    /// <summary>First encoder-input column of each feature.</summary>
    public IReadOnlyList<int> InputOffsets => InputOffsetArray;

    /// <summary>Width of the decoder output.</summary>
    public int HeadWidth { get; }

    /// <summary>
    /// Per feature, its first decoder-output column: the Gaussian mean (numeric), the Bernoulli logit (binary),
    /// or the first of its K logits (categorical). A numeric feature's log-variance is at
    /// <see cref="NumericLogVarOffset"/> + (offset of its mean).
    /// </summary>
    public IReadOnlyList<int> HeadOffsets => HeadOffsetArray;

    /// <summary>Feature indices of the numeric features, in schema order (= order of the mean and log-variance blocks).</summary>
    public IReadOnlyList<int> NumericFeatures => NumericIndex;

    /// <summary>Feature indices of the binary features, in schema order.</summary>
    public IReadOnlyList<int> BinaryFeatures => BinaryIndex;

    /// <summary>Feature indices of the categorical features, in schema order.</summary>
    public IReadOnlyList<int> CategoricalFeatures => CategoricalIndex;

    /// <summary>Start of the numeric mean block (always 0).</summary>
    public int NumericMeanOffset => 0;

    /// <summary>Start of the numeric log-variance block (= number of numeric features).</summary>
    public int NumericLogVarOffset { get; }

    /// <summary>Start of the binary logit block.</summary>
    public int BinaryLogitOffset { get; }

    /// <summary>Start of the categorical logit block.</summary>
    public int CategoricalLogitOffset { get; }

    private int[] Indices(FeatureKind kind)
    {
        var list = new List<int>();
        for (int j = 0; j < FeatureArray.Length; j++)
        {
            if (FeatureArray[j].Kind == kind)
                list.Add(j);
        }

        return [.. list];
    }
}
