namespace AnomalyVae.Model;

/// <summary>
/// One feature's fitted parameters (see the data contract): numeric center/scale (+ log flag), categorical
/// vocabulary, binary token mapping. Immutable; lookups are allocation-free.
/// </summary>
public sealed class FittedFeature
{
    private readonly string[] _vocabulary;
    private readonly string[] _falseTokens;
    private readonly string[] _trueTokens;
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _categoryIndex;
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _bitOfToken;

    private FittedFeature(string name, FeatureKind kind, bool log, double center, double scale,
        string[] vocabulary, string[] falseTokens, string[] trueTokens, double tailScale = 0, QuantileMap? quantileMap = null)
    {
        var problems = new List<string>();
        if (string.IsNullOrWhiteSpace(name))
            problems.Add("a feature has an empty name");
        if (!Enum.IsDefined(kind))
            problems.Add($"feature '{name}': unknown kind {(int)kind}");
        if (log && kind != FeatureKind.Numeric)
            problems.Add($"feature '{name}': log applies only to numeric features");
        if (!double.IsFinite(center))
            problems.Add($"feature '{name}': center must be finite, not {center}");
        if (!double.IsFinite(scale) || scale <= 0)
            problems.Add($"feature '{name}': scale must be finite and positive, not {scale}");
        if (!double.IsFinite(tailScale) || tailScale < 0 || (tailScale > 0 && kind != FeatureKind.Numeric))
            problems.Add($"feature '{name}': tail scale must be 0, or finite and positive on a numeric feature, not {tailScale}");
        if (quantileMap is not null && kind != FeatureKind.Numeric)
            problems.Add($"feature '{name}': a quantile map applies only to numeric features");

        var categories = new Dictionary<string, int>(vocabulary.Length, StringComparer.Ordinal);
        if (kind == FeatureKind.Categorical)
        {
            if (vocabulary.Length == 0 || vocabulary[0] != FeatureSchema.UnknownCategory)
                problems.Add($"feature '{name}': the vocabulary must start with the reserved \"{FeatureSchema.UnknownCategory}\"");
            for (var i = 1; i < vocabulary.Length; i++)
            {
                if (vocabulary[i] is null || !categories.TryAdd(vocabulary[i], i))
                    problems.Add($"feature '{name}': vocabulary value '{vocabulary[i]}' is null or repeated");
            }
        }

        var bits = new Dictionary<string, int>(StringComparer.OrdinalIgnoreCase);
        if (kind == FeatureKind.Binary)
        {
            if (falseTokens.Length == 0 || trueTokens.Length == 0)
                problems.Add($"feature '{name}': a binary feature needs at least one false token and one true token");
            foreach (var (tokens, bit) in new[] { (falseTokens, 0), (trueTokens, 1) })
            {
                foreach (var token in tokens)
                {
                    if (string.IsNullOrWhiteSpace(token) || token.Trim().Length != token.Length || CellText.IsMissing(token))
                        problems.Add($"feature '{name}': binary token '{token}' is empty, padded or a missing-value token");
                    else if (!bits.TryAdd(token, bit))
                        problems.Add($"feature '{name}': binary token '{token}' is listed twice (tokens are case-insensitive)");
                }
            }
        }

        if (problems.Count > 0)
            throw new FeatureSpecException(problems);

        Name = name;
        Kind = kind;
        Log = log;
        Center = center;
        Scale = scale;
        TailScale = tailScale;
        QuantileMap = quantileMap;
        _vocabulary = vocabulary;
        _falseTokens = falseTokens;
        _trueTokens = trueTokens;
        _categoryIndex = categories.GetAlternateLookup<ReadOnlySpan<char>>();
        _bitOfToken = bits.GetAlternateLookup<ReadOnlySpan<char>>();
    }

    /// <summary>Column / event field name.</summary>
    public string Name { get; }

    /// <summary>How the feature is modelled.</summary>
    public FeatureKind Kind { get; }

    /// <summary>Numeric only: t = sign(x)·log(1+|x|) before standardizing.</summary>
    public bool Log { get; }

    /// <summary>Numeric: median of t over training rows (0 for other kinds).</summary>
    public double Center { get; }

    /// <summary>Numeric: IQR(t)/1.349, else std(t), else 1 — always finite and positive (1 for other kinds).</summary>
    public double Scale { get; }

    /// <summary>
    /// Numeric: k of the tail squash z ↦ k·asinh(z / k) applied after standardizing (0 = none, the form of
    /// models written before it existed). Near-linear for |z| well below k, logarithmic beyond, so a few extreme
    /// training values no longer dominate the Gaussian fit and the score; see <see cref="FeatureSchema.FitTailScale"/>.
    /// </summary>
    public double TailScale { get; }

    /// <summary>Numeric: the rank-Gauss map blended into the standardized value (null = none, as in models before it).</summary>
    public QuantileMap? QuantileMap { get; }

    /// <summary>Categorical: index 0 = <see cref="FeatureSchema.UnknownCategory"/>, then training values by
    /// descending frequency, ties in ordinal order. Empty for other kinds.</summary>
    public IReadOnlyList<string> Vocabulary => _vocabulary;

    /// <summary>Categorical: K, the number of softmax classes including the unknown bucket; 0 for other kinds.</summary>
    public int Cardinality => _vocabulary.Length;

    /// <summary>Width of this feature in the encoder input (contract): K for categorical (one-hot), 1 otherwise.</summary>
    public int EncodedWidth => Kind == FeatureKind.Categorical ? _vocabulary.Length : 1;

    /// <summary>Binary: tokens read as 0 (case-insensitive). Empty for other kinds.</summary>
    public IReadOnlyList<string> FalseTokens => _falseTokens;

    /// <summary>Binary: tokens read as 1 (case-insensitive). Empty for other kinds.</summary>
    public IReadOnlyList<string> TrueTokens => _trueTokens;

    /// <summary>A numeric feature with given parameters (for fitted schemas read back and for tests).</summary>
    public static FittedFeature Numeric(string name, double center, double scale, bool log = false, double tailScale = 0, QuantileMap? quantileMap = null) =>
        new(name, FeatureKind.Numeric, log, center, scale, [], [], [], tailScale, quantileMap);

    /// <summary>A categorical feature; <paramref name="values"/> excludes the unknown bucket, which is prepended.</summary>
    public static FittedFeature Categorical(string name, IEnumerable<string> values) =>
        new(name, FeatureKind.Categorical, false, 0, 1, [FeatureSchema.UnknownCategory, .. values], [], []);

    /// <summary>A binary feature; null token lists mean <see cref="CellText.StandardFalseTokens"/>/<see cref="CellText.StandardTrueTokens"/>.</summary>
    public static FittedFeature Binary(string name, IEnumerable<string>? falseTokens = null, IEnumerable<string>? trueTokens = null) =>
        new(name, FeatureKind.Binary, false, 0, 1, [],
            [.. falseTokens ?? CellText.StandardFalseTokens], [.. trueTokens ?? CellText.StandardTrueTokens]);

    internal static FittedFeature FromParts(string name, FeatureKind kind, bool log, double center, double scale,
        string[] vocabulary, string[] falseTokens, string[] trueTokens, double tailScale, QuantileMap? quantileMap) =>
        new(name, kind, log, center, scale, vocabulary, falseTokens, trueTokens, tailScale, quantileMap);

    /// <summary>Categorical: vocabulary index of <paramref name="value"/> (ordinal, trimmed), 0 when unseen.</summary>
    public int CategoryIndex(ReadOnlySpan<char> value) =>
        _categoryIndex.TryGetValue(value.Trim(), out var index) ? index : 0;

    /// <summary>Binary: 0 or 1 for a known token (case-insensitive, trimmed), -1 otherwise.</summary>
    public int Bit(ReadOnlySpan<char> token) =>
        _bitOfToken.TryGetValue(token.Trim(), out var bit) ? bit : -1;

    /// <summary>Numeric: t = log ? sign(x)·log(1+|x|) : x.</summary>
    public double Transform(double x) => Log ? Math.Sign(x) * Math.Log(1 + Math.Abs(x)) : x;

    /// <summary>
    /// Numeric: z = clamp((t - center) / scale, ±<see cref="FeatureSchema.StandardizedLimit"/>), then the tail squash
    /// z′ = k·asinh(z / k) when <see cref="TailScale"/> is set, then with a <see cref="QuantileMap"/>
    /// w·z′ + (1 − w)·Q(t).
    /// </summary>
    public float Standardize(float x) => (float)StandardizeTransformed(Transform(x));

    /// <summary><see cref="Standardize"/> of an already transformed value t.</summary>
    private double StandardizeTransformed(double t)
    {
        double z = ClampedZ(t);
        double squashed = TailScale > 0 ? TailScale * Math.Asinh(z / TailScale) : z;
        return QuantileMap is { } map ? ((map.Blend * squashed) + ((1 - map.Blend) * map.Apply(t)) - map.Center) / map.Scale : squashed;
    }

    /// <summary>The robust z of a transformed value, clamped to ±<see cref="FeatureSchema.StandardizedLimit"/>.</summary>
    private double ClampedZ(double t) => Math.Clamp((t - Center) / Scale, -FeatureSchema.StandardizedLimit, FeatureSchema.StandardizedLimit);

    /// <summary>
    /// Numeric: log of d(<see cref="Standardize"/>)/dt at x, the change of variables between the model's units and
    /// the column's (the clamp is ignored, as if z went on). Needs x only with a tail squash or a quantile map.
    /// </summary>
    public double LogSlope(float x)
    {
        if (TailScale == 0 && QuantileMap is null)
            return -Math.Log(Scale);
        double t = Transform(x);
        double u = TailScale > 0 ? ClampedZ(t) / TailScale : 0;
        double slope = 1 / (Scale * Math.Sqrt(1 + (u * u)));
        if (QuantileMap is { } map)
            slope = ((map.Blend * slope) + ((1 - map.Blend) * map.Slope(t))) / map.Scale;
        return Math.Log(slope);
    }

    /// <summary>Numeric: the raw value whose <see cref="Standardize"/> is <paramref name="value"/> (generated rows back to data units).</summary>
    public double Unstandardize(double value)
    {
        double t;
        if (QuantileMap is not null)
        {
            // The blend of two increasing maps has no closed inverse: bisection in t, within the clamp of z.
            double lo = Center - (FeatureSchema.StandardizedLimit * Scale), hi = Center + (FeatureSchema.StandardizedLimit * Scale);
            for (int i = 0; i < 200 && hi - lo > 1e-12 * Math.Max(1, Math.Abs(lo) + Math.Abs(hi)); i++)
            {
                double mid = 0.5 * (lo + hi);
                if (StandardizeTransformed(mid) < value)
                    lo = mid;
                else
                    hi = mid;
            }
            t = 0.5 * (lo + hi);
        }
        else
        {
            double z = TailScale > 0 ? TailScale * Math.Sinh(value / TailScale) : value;
            t = (z * Scale) + Center;
        }
        return Log ? Math.Sign(t) * (Math.Exp(Math.Abs(t)) - 1) : t;
    }
}
