using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace AnomalyVae.Model;

/// <summary>
/// The fitted features of a model, in model order: fitted by the trainer, embedded in the ONNX file as JSON, read back
/// by the service to decode events. Raw input: numeric → the value (non-finite → missing, beyond float range →
/// ±float.MaxValue); categorical → vocabulary index (0 = unknown, still present); binary → 0/1; missing tokens
/// (<see cref="CellText.MissingTokens"/>) → x = 0, mask = 0.
/// </summary>
public sealed class FeatureSchema
{
    /// <summary>Vocabulary entry 0, the bucket for values not seen in training.</summary>
    public const string UnknownCategory = "<unknown>";

    /// <summary>
    /// Most observed values a categorical vocabulary keeps (plus the unknown bucket). Rarer values fall into the
    /// unknown bucket: the softmax head grows with K and values seen a handful of times cannot be learned anyway.
    /// </summary>
    public const int MaxCategories = 1000;

    /// <summary>Standardized numerics are clamped to ±this so an extreme value cannot overflow the network.</summary>
    public const double StandardizedLimit = 1e4;

    /// <summary>Version of the JSON form written by <see cref="ToJson"/>.</summary>
    public const int FormatVersion = 1;

    private static readonly JsonSerializerOptions s_json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.CamelCase, allowIntegerValues: false) },
    };

    private readonly FittedFeature[] _features;
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _indexByName;
    private readonly Dictionary<string, int> _indexByNameDictionary;

    /// <summary>Creates a schema from fitted features, in model order.</summary>
    /// <exception cref="FeatureSpecException">No features, or duplicate names.</exception>
    public FeatureSchema(IEnumerable<FittedFeature> features)
    {
        ArgumentNullException.ThrowIfNull(features);
        _features = [.. features];
        if (_features.Length == 0)
            throw new FeatureSpecException("a feature schema needs at least one feature");
        _indexByNameDictionary = new Dictionary<string, int>(_features.Length, StringComparer.Ordinal);
        for (var i = 0; i < _features.Length; i++)
        {
            ArgumentNullException.ThrowIfNull(_features[i], nameof(features));
            if (!_indexByNameDictionary.TryAdd(_features[i].Name, i))
                throw new FeatureSpecException($"duplicate feature name '{_features[i].Name}'");
        }

        _indexByName = _indexByNameDictionary.GetAlternateLookup<ReadOnlySpan<char>>();
    }

    /// <summary>Features in model order (the F columns of x and mask).</summary>
    public IReadOnlyList<FittedFeature> Features => _features;

    /// <summary>F, the number of features.</summary>
    public int Count => _features.Length;

    /// <summary>Width of the encoder input per the contract: the encoded features (K per categorical) plus F mask values.</summary>
    public int EncoderInputWidth => _features.Sum(f => f.EncodedWidth) + _features.Length;

    /// <summary>Fits a schema on a CSV file (one streaming pass).</summary>
    public static FeatureSchema Fit(FeatureSpec spec, string csvPath, CancellationToken cancellationToken = default)
    {
        using var reader = CsvReader.Open(csvPath);
        return Fit(spec, reader, cancellationToken);
    }

    /// <summary>
    /// Fits a schema (docs/cli.md#feature-spec) on the remaining records of <paramref name="reader"/>: robust numeric
    /// center and scale, vocabularies by frequency (at most <see cref="MaxCategories"/>), binary token mappings.
    /// </summary>
    /// <exception cref="FeatureSpecException">A spec column missing from the header; a binary column with
    /// values that cannot be mapped to 0/1.</exception>
    /// <exception cref="CsvFormatException">Malformed CSV, or a numeric cell that is not a number (names line and column).</exception>
    public static FeatureSchema Fit(FeatureSpec spec, CsvReader reader, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(spec);
        ArgumentNullException.ThrowIfNull(reader);
        var columns = spec.ResolveColumns(reader.Header);
        var statistics = new ColumnStatistics(spec);
        var rows = 0L;
        while (reader.ReadRecord())
        {
            if ((++rows & 0xFFF) == 0)
                cancellationToken.ThrowIfCancellationRequested();
            for (var f = 0; f < columns.Length; f++)
                statistics.Add(f, reader[columns[f]], reader.Line);
        }

        return statistics.ToSchema();
    }

    /// <summary>Fits a schema on rows held in memory; <paramref name="header"/> names the cells of each row.
    /// Error line numbers count the header as line 1 and one line per row.</summary>
    public static FeatureSchema Fit(FeatureSpec spec, IReadOnlyList<string> header, IEnumerable<IReadOnlyList<string>> rows)
    {
        ArgumentNullException.ThrowIfNull(spec);
        ArgumentNullException.ThrowIfNull(rows);
        var columns = spec.ResolveColumns(header);
        var statistics = new ColumnStatistics(spec);
        long line = 1;
        foreach (var row in rows)
        {
            line++;
            if (row.Count != header.Count)
                throw new CsvFormatException($"line {line}: expected {header.Count} fields (as in the header) but found {row.Count}", line);
            for (var f = 0; f < columns.Length; f++)
                statistics.Add(f, row[columns[f]], line);
        }

        return statistics.ToSchema();
    }

    /// <summary>Reads the JSON form written by <see cref="ToJson"/> and checks it.</summary>
    /// <exception cref="FeatureSpecException">Malformed JSON, an unsupported version, or invalid parameters.</exception>
    public static FeatureSchema FromJson(string json)
    {
        ArgumentNullException.ThrowIfNull(json);
        SchemaDocument? document;
        try
        {
            document = JsonSerializer.Deserialize<SchemaDocument>(json, s_json);
        }
        catch (JsonException e)
        {
            throw new FeatureSpecException($"feature schema JSON is malformed: {e.Message}", e);
        }

        if (document is null || document.Features is null)
            throw new FeatureSpecException("feature schema JSON has no \"features\"");
        if (document.Version != FormatVersion)
            throw new FeatureSpecException($"feature schema version {document.Version} is not supported (expected {FormatVersion})");

        if (document.Features.Any(f => f?.Kind is null))
            throw new FeatureSpecException("feature schema JSON has a feature without \"kind\"");

        return new FeatureSchema(document.Features.Select(f => FittedFeature.FromParts(
            f.Name ?? "",
            f.Kind!.Value,
            f.Log ?? false,
            f.Kind == FeatureKind.Numeric ? f.Center ?? double.NaN : 0,
            f.Kind == FeatureKind.Numeric ? f.Scale ?? double.NaN : 1,
            f.Vocabulary ?? [],
            f.FalseTokens ?? [],
            f.TrueTokens ?? [],
            f.Kind == FeatureKind.Numeric ? f.TailScale ?? 0 : 0,
            ReadQuantileMap(f))));
    }

    private static QuantileMap? ReadQuantileMap(FeatureDocument f)
    {
        if (f.QuantileKnots is null && f.QuantileGaussian is null && f.QuantileBlend is null)
            return null;
        try
        {
            return new QuantileMap(f.QuantileKnots ?? [], f.QuantileGaussian ?? [], f.QuantileBlend ?? double.NaN, f.QuantileCenter ?? 0, f.QuantileScale ?? 1);
        }
        catch (ArgumentException e)
        {
            throw new FeatureSpecException($"feature '{f.Name}': {e.Message}");
        }
    }

    /// <summary>The JSON form (camelCase; kinds as lowercase strings; numbers round-trip exactly).</summary>
    public string ToJson(bool indented = false)
    {
        var document = new SchemaDocument(FormatVersion, [.. _features.Select(f => f.Kind switch
        {
            FeatureKind.Numeric => new FeatureDocument(f.Name, f.Kind, f.Log, f.Center, f.Scale, null, null, null, f.TailScale > 0 ? f.TailScale : null)
            {
                QuantileKnots = f.QuantileMap is { } map ? [.. map.Knots] : null,
                QuantileGaussian = f.QuantileMap is { } m ? [.. m.Gaussian] : null,
                QuantileBlend = f.QuantileMap?.Blend,
                QuantileCenter = f.QuantileMap?.Center,
                QuantileScale = f.QuantileMap?.Scale,
            },
            FeatureKind.Categorical => new FeatureDocument(f.Name, f.Kind, null, null, null, [.. f.Vocabulary], null, null, null),
            _ => new FeatureDocument(f.Name, f.Kind, null, null, null, null, [.. f.FalseTokens], [.. f.TrueTokens], null),
        })]);
        return JsonSerializer.Serialize(document, new JsonSerializerOptions(s_json) { WriteIndented = indented });
    }

    /// <summary>Index of the feature named <paramref name="name"/> (ordinal), without allocating.</summary>
    public bool TryGetIndex(ReadOnlySpan<char> name, out int index) => _indexByName.TryGetValue(name, out index);

    /// <summary>Index of the feature named <paramref name="name"/>, or -1.</summary>
    public int IndexOf(string name) => _indexByNameDictionary.TryGetValue(name, out var i) ? i : -1;

    /// <summary>
    /// Encodes a text cell of feature <paramref name="feature"/> into its raw-input slot.
    /// </summary>
    /// <returns>false when the text is not valid for the feature (a numeric that does not parse, a binary token
    /// that is not mapped); x and mask are then 0 and the caller decides (the CSV loader reports line/column).</returns>
    public bool TryEncode(int feature, ReadOnlySpan<char> cell, out float x, out float mask)
    {
        var fitted = _features[feature];
        x = 0;
        mask = 0;
        if (CellText.IsMissing(cell))
            return true;
        switch (fitted.Kind)
        {
            case FeatureKind.Numeric:
                return CellText.TryParseNumber(cell, out var value) && TryEncode(feature, value, out x, out mask);
            case FeatureKind.Categorical:
                x = fitted.CategoryIndex(cell);
                mask = 1;
                return true;
            default:
                var bit = fitted.Bit(cell);
                if (bit < 0)
                    return false;
                x = bit;
                mask = 1;
                return true;
        }
    }

    /// <summary>
    /// Encodes a number (e.g. a JSON number of an event). Numeric: the value (non-finite → missing); binary:
    /// only 0 or 1 are valid; categorical: the number's invariant text looked up in the vocabulary (3.0 → "3").
    /// </summary>
    public bool TryEncode(int feature, double value, out float x, out float mask)
    {
        var fitted = _features[feature];
        x = 0;
        mask = 0;
        if (!double.IsFinite(value))
            return fitted.Kind == FeatureKind.Numeric || double.IsNaN(value);
        switch (fitted.Kind)
        {
            case FeatureKind.Numeric:
                // Beyond float range the value is still "very large": keep the sign rather than lose it to infinity.
                x = (float)Math.Clamp(value, float.MinValue, float.MaxValue);
                mask = 1;
                return true;
            case FeatureKind.Categorical:
                Span<char> text = stackalloc char[32];
                value.TryFormat(text, out var written, "R", CultureInfo.InvariantCulture);
                x = fitted.CategoryIndex(text[..written]);
                mask = 1;
                return true;
            default:
                if (value is not (0 or 1))
                    return false;
                x = (float)value;
                mask = 1;
                return true;
        }
    }

    /// <summary>Encodes a boolean (e.g. a JSON true/false): binary and numeric → 1/0; categorical → "true"/"false" looked up.</summary>
    public bool TryEncode(int feature, bool value, out float x, out float mask)
    {
        var fitted = _features[feature];
        x = fitted.Kind == FeatureKind.Categorical ? fitted.CategoryIndex(value ? "true" : "false") : value ? 1 : 0;
        mask = 1;
        return true;
    }

    /// <summary>
    /// Turns raw input rows into the engine's training input (contract): per cell, numeric → standardized z,
    /// categorical → index, binary → 0/1, and 0 wherever mask is 0. All spans are rows × F, row-major.
    /// </summary>
    public void Standardize(ReadOnlySpan<float> x, ReadOnlySpan<float> mask, Span<float> values)
    {
        var width = _features.Length;
        if (x.Length % width != 0 || mask.Length != x.Length || values.Length != x.Length)
            throw new ArgumentException($"x, mask and values must all have the same length, a multiple of F = {width}");
        for (var f = 0; f < width; f++)
        {
            var fitted = _features[f];
            var numeric = fitted.Kind == FeatureKind.Numeric;
            for (var i = f; i < x.Length; i += width)
                values[i] = mask[i] == 0 ? 0 : numeric ? fitted.Standardize(x[i]) : x[i];
        }
    }

    private sealed record SchemaDocument(int Version, FeatureDocument[]? Features);

    private sealed record FeatureDocument(
        string? Name,
        FeatureKind? Kind,
        bool? Log,
        double? Center,
        double? Scale,
        string[]? Vocabulary,
        string[]? FalseTokens,
        string[]? TrueTokens,
        double? TailScale)
    {
        public double[]? QuantileKnots { get; init; }

        public double[]? QuantileGaussian { get; init; }

        public double? QuantileBlend { get; init; }

        public double? QuantileCenter { get; init; }

        public double? QuantileScale { get; init; }
    }

    /// <summary>What fitting needs to remember per column in one pass.</summary>
    private sealed class ColumnStatistics
    {
        private readonly FeatureSpec _spec;
        private readonly List<float>?[] _numbers;
        private readonly Dictionary<string, long>?[] _counts;
        private readonly Dictionary<string, long>.AlternateLookup<ReadOnlySpan<char>>[] _countLookups;

        public ColumnStatistics(FeatureSpec spec)
        {
            _spec = spec;
            var n = spec.Features.Count;
            _numbers = new List<float>?[n];
            _counts = new Dictionary<string, long>?[n];
            _countLookups = new Dictionary<string, long>.AlternateLookup<ReadOnlySpan<char>>[n];
            for (var f = 0; f < n; f++)
            {
                switch (spec.Features[f].Kind)
                {
                    case FeatureKind.Numeric:
                        _numbers[f] = [];
                        break;
                    case FeatureKind.Categorical:
                        _counts[f] = new Dictionary<string, long>(StringComparer.Ordinal);
                        break;
                    default:
                        // Binary tokens are case-insensitive, so "Yes" and "yes" are one value.
                        _counts[f] = new Dictionary<string, long>(StringComparer.OrdinalIgnoreCase);
                        break;
                }

                if (_counts[f] is { } counts)
                    _countLookups[f] = counts.GetAlternateLookup<ReadOnlySpan<char>>();
            }
        }

        public void Add(int feature, ReadOnlySpan<char> cell, long line)
        {
            if (CellText.IsMissing(cell))
                return;
            cell = cell.Trim();
            if (_numbers[feature] is { } numbers)
            {
                if (!CellText.TryParseNumber(cell, out var value))
                {
                    var name = _spec.Features[feature].Name;
                    throw new CsvFormatException(
                        $"line {line}, column '{name}': '{CsvFormatException.Excerpt(cell)}' is not a number (the feature is numeric)", line, name);
                }

                if (double.IsFinite(value))
                    numbers.Add((float)Math.Clamp(value, float.MinValue, float.MaxValue));
                return;
            }

            ref var count = ref CollectionsMarshal.GetValueRefOrAddDefault(_countLookups[feature], cell, out _);
            count++;
        }

        public FeatureSchema ToSchema()
        {
            var features = new FittedFeature[_spec.Features.Count];
            for (var f = 0; f < features.Length; f++)
            {
                var definition = _spec.Features[f];
                features[f] = definition.Kind switch
                {
                    FeatureKind.Numeric => FitNumeric(definition, _numbers[f]!),
                    FeatureKind.Categorical => FittedFeature.Categorical(definition.Name, Vocabulary(_counts[f]!)),
                    _ => FitBinary(definition.Name, _counts[f]!),
                };
            }

            return new FeatureSchema(features);
        }

        private static FittedFeature FitNumeric(FeatureDefinition definition, List<float> numbers)
        {
            var probe = FittedFeature.Numeric(definition.Name, 0, 1, definition.Log);
            var t = new double[numbers.Count];
            for (var i = 0; i < t.Length; i++)
                t[i] = probe.Transform(numbers[i]);
            var (center, scale) = RobustLocationScale(t);
            return FitNumericFeature(definition.Name, t, center, scale, definition.Log, definition.QuantileMap);
        }

        private static IEnumerable<string> Vocabulary(Dictionary<string, long> counts) =>
            counts
                .Where(kv => kv.Key != UnknownCategory) // a literal "<unknown>" value lands in bucket 0 anyway
                .OrderByDescending(kv => kv.Value)
                .ThenBy(kv => kv.Key, StringComparer.Ordinal)
                .Take(MaxCategories)
                .Select(kv => kv.Key);

        private static FittedFeature FitBinary(string name, Dictionary<string, long> counts)
        {
            var nonStandard = counts.Keys.Where(k => CellText.StandardBit(k) < 0).ToArray();
            if (nonStandard.Length == 0)
                return FittedFeature.Binary(name);

            var values = counts.Keys.Order(StringComparer.OrdinalIgnoreCase).ToArray();
            if (values.Length != 2)
            {
                var listed = string.Join(", ", values.Take(10).Select(v => $"'{v}'"));
                throw new FeatureSpecException(values.Length == 1
                    ? $"binary column '{name}' has the single value {listed}, which is not a standard 0/1 token ({string.Join("/", CellText.StandardTrueTokens)} vs {string.Join("/", CellText.StandardFalseTokens)}); declare it categorical or recode it"
                    : $"binary column '{name}' has {values.Length} distinct values ({listed}{(values.Length > 10 ? ", …" : "")}); a binary feature needs two, or the standard 0/1 tokens; declare it categorical");
            }

            // One standard token keeps its meaning and the other value takes the opposite bit; two custom
            // tokens map in ordinal (case-insensitive) order: first → 0, second → 1.
            var standard = values.FirstOrDefault(v => CellText.StandardBit(v) >= 0);
            var zeroFirst = standard is null || (CellText.StandardBit(standard) == 0) == (standard == values[0]);
            var (zero, one) = zeroFirst ? (values[0], values[1]) : (values[1], values[0]);
            return FittedFeature.Binary(name, [zero], [one]);
        }
    }

    /// <summary>
    /// Robust center and scale of <paramref name="t"/> (reordered in place): median and IQR/1.349 (type-7
    /// quantiles), falling back to the standard deviation when the IQR is 0 and to 1 when that is 0 too, so that
    /// constant or mostly-constant columns never produce NaN or infinity. An empty column gets (0, 1).
    /// </summary>
    public static (double Center, double Scale) RobustLocationScale(double[] t)
    {
        if (t.Length == 0)
            return (0, 1);

        // Selection instead of a full sort: three order statistics of millions of values in linear time.
        var center = SelectQuantile(t, 0.5);
        var scale = (SelectQuantile(t, 0.75) - SelectQuantile(t, 0.25)) / 1.349;
        if (!(scale > 0) || !double.IsFinite(scale))
        {
            double mean = 0, m2 = 0;
            for (var i = 0; i < t.Length; i++)
            {
                var delta = t[i] - mean;
                mean += delta / (i + 1);
                m2 += delta * (t[i] - mean);
            }

            scale = Math.Sqrt(m2 / t.Length);
        }

        if (!(scale > 0) || !double.IsFinite(scale))
            scale = 1;
        return (double.IsFinite(center) ? center : 0, scale);
    }

    /// <summary>
    /// The tail squash k of a numeric column (<see cref="FittedFeature.TailScale"/>) from its training values t and
    /// their robust center and scale: k = max(<see cref="TailScaleFloor"/>, <see cref="TailScaleMultiple"/>·q95(|z|)),
    /// z = (t − center) / scale, so only the far tail is compressed. Why this rule: docs/quality.md.
    /// </summary>
    public static double FitTailScale(ReadOnlySpan<double> t, double center, double scale)
    {
        if (t.Length == 0)
            return TailScaleFloor;
        var z = new double[t.Length];
        for (var i = 0; i < t.Length; i++)
            z[i] = Math.Min(Math.Abs((t[i] - center) / scale), StandardizedLimit);
        return Math.Max(TailScaleFloor, TailScaleMultiple * SelectQuantile(z, TailScaleQuantile));
    }

    /// <summary>
    /// A numeric feature around <paramref name="center"/> and <paramref name="scale"/>, with the tail squash (and, when
    /// asked, the quantile map) fitted on its training values <paramref name="t"/> (transformed units): the schema's
    /// own fit, and the quality benchmarks' with their own center and scale.
    /// </summary>
    public static FittedFeature FitNumericFeature(string name, double[] t, double center, double scale, bool log = false, bool quantileMap = false)
    {
        ArgumentNullException.ThrowIfNull(t);
        double tail = FitTailScale(t, center, scale);
        return FittedFeature.Numeric(name, center, scale, log, tail, quantileMap ? FitQuantileMap(t, center, scale, tail) : null);
    }

    /// <summary>
    /// The quantile map of a numeric column (<see cref="FeatureDefinition.QuantileMap"/>) from its training values t
    /// (transformed units) and its fitted center, scale and tail squash: the rank-Gauss knots, then the robust center
    /// and scale of the blend over the same rows, so the blended column enters the model at unit scale. Null for a
    /// column with fewer than two distinct values.
    /// </summary>
    public static QuantileMap? FitQuantileMap(ReadOnlySpan<double> t, double center, double scale, double tailScale)
    {
        var map = QuantileMap.Fit(t);
        if (map is null)
            return null;
        var blended = FittedFeature.Numeric("t", center, scale, log: false, tailScale, map);
        var b = new double[t.Length];
        for (var i = 0; i < b.Length; i++)
            b[i] = blended.Standardize((float)t[i]);
        var (blendCenter, blendScale) = RobustLocationScale(b);
        return map.Restandardized(blendCenter, blendScale);
    }

    /// <summary>Quantile of |z| over the training rows that sets a column's tail squash.</summary>
    public const double TailScaleQuantile = 0.95;

    /// <summary>Multiple of that quantile where the squash sets in.</summary>
    public const double TailScaleMultiple = 3;

    /// <summary>Smallest tail squash k (standardized units).</summary>
    public const double TailScaleFloor = 3;

    /// <summary>Type-7 quantile of unsorted, NaN-free <paramref name="data"/>, which is reordered.</summary>
    internal static double SelectQuantile(Span<double> data, double p)
    {
        var h = (data.Length - 1) * p;
        var lo = (int)Math.Floor(h);
        var a = Select(data, lo);
        if (h == lo)
            return a;

        // After selection everything right of lo is ≥ a; the next order statistic is their minimum.
        var b = double.PositiveInfinity;
        foreach (var v in data[(lo + 1)..])
            b = Math.Min(b, v);
        return a + ((h - lo) * (b - a));
    }

    /// <summary>
    /// Moves the k-th smallest value to index k with smaller-or-equal values left of it and larger-or-equal
    /// right of it (Wirth's selection, median-of-three pivot; sorts the remaining range if an adversarial order
    /// makes it take too many rounds).
    /// </summary>
    private static double Select(Span<double> data, int k)
    {
        int left = 0, right = data.Length - 1;
        var rounds = (2 * System.Numerics.BitOperations.Log2((uint)data.Length)) + 16;
        while (left < right)
        {
            if (--rounds < 0)
            {
                data[left..(right + 1)].Sort();
                break;
            }

            var (x, y, z) = (data[left], data[left + ((right - left) / 2)], data[right]);
            var pivot = Math.Max(Math.Min(x, y), Math.Min(Math.Max(x, y), z));
            int i = left, j = right;
            do
            {
                while (data[i] < pivot)
                    i++;
                while (pivot < data[j])
                    j--;
                if (i <= j)
                {
                    (data[i], data[j]) = (data[j], data[i]);
                    i++;
                    j--;
                }
            }
            while (i <= j);

            if (j < k)
                left = i;
            if (k < i)
                right = j;
        }

        return data[k];
    }

    /// <summary>Type-7 (linear interpolation) quantile of ascending <paramref name="sorted"/>.</summary>
    internal static double Quantile(ReadOnlySpan<double> sorted, double p)
    {
        var h = (sorted.Length - 1) * p;
        var lo = (int)Math.Floor(h);
        var hi = Math.Min(lo + 1, sorted.Length - 1);
        return sorted[lo] + ((h - lo) * (sorted[hi] - sorted[lo]));
    }
}
