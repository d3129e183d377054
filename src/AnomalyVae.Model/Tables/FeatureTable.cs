namespace AnomalyVae.Model;

/// <summary>
/// N rows of raw input (contract): x and mask as contiguous row-major N×F float arrays in schema order, plus
/// optional extra columns kept as text (e.g. a label for <c>evaluate</c>, an id for score output) and the CSV
/// line each row came from.
/// </summary>
public sealed class FeatureTable
{
    private readonly Dictionary<string, string[]> _extra;
    private readonly string[] _extraNames;

    /// <summary>Wraps raw input already in memory (e.g. synthetic data). Arrays are used as is, not copied.</summary>
    /// <param name="schema">The features the F columns follow.</param>
    /// <param name="x">Raw values, rows × F row-major.</param>
    /// <param name="mask">1 = present, 0 = missing, same shape as <paramref name="x"/>.</param>
    /// <param name="lines">Optional source line per row; defaults to row index + 2 (as if read from a CSV with a header).</param>
    /// <param name="extraColumns">Optional text columns, each with one value per row.</param>
    public FeatureTable(FeatureSchema schema, float[] x, float[] mask, long[]? lines = null,
        IReadOnlyDictionary<string, string[]>? extraColumns = null)
    {
        ArgumentNullException.ThrowIfNull(schema);
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(mask);
        if (x.Length % schema.Count != 0 || mask.Length != x.Length)
            throw new ArgumentException($"x and mask must have the same length, a multiple of F = {schema.Count}");
        var rows = x.Length / schema.Count;
        if (lines is not null && lines.Length != rows)
            throw new ArgumentException($"lines has {lines.Length} entries for {rows} rows", nameof(lines));
        for (var i = 0; i < mask.Length; i++)
        {
            if (mask[i] is not (0 or 1))
                throw new ArgumentException($"mask[{i}] = {mask[i]}; mask values must be 0 or 1", nameof(mask));
        }

        Schema = schema;
        X = x;
        Mask = mask;
        RowCount = rows;
        Lines = lines ?? [.. Enumerable.Range(0, rows).Select(i => (long)i + 2)];
        _extra = new Dictionary<string, string[]>(StringComparer.Ordinal);
        foreach (var (name, values) in extraColumns ?? new Dictionary<string, string[]>())
        {
            if (values.Length != rows)
                throw new ArgumentException($"extra column '{name}' has {values.Length} values for {rows} rows", nameof(extraColumns));
            _extra.Add(name, values);
        }

        _extraNames = [.. _extra.Keys];
    }

    /// <summary>The schema the columns follow.</summary>
    public FeatureSchema Schema { get; }

    /// <summary>N, the number of rows.</summary>
    public int RowCount { get; }

    /// <summary>F, the number of features (columns of <see cref="X"/> and <see cref="Mask"/>).</summary>
    public int FeatureCount => Schema.Count;

    /// <summary>Raw input values, N×F row-major (numeric raw value, categorical index, binary 0/1; 0 when missing).</summary>
    public float[] X { get; }

    /// <summary>1 = present, 0 = missing; N×F row-major.</summary>
    public float[] Mask { get; }

    /// <summary>1-based CSV line where each row's record starts (for messages and score output).</summary>
    public long[] Lines { get; }

    /// <summary>Names of the extra text columns kept alongside the features.</summary>
    public IReadOnlyList<string> ExtraColumns => _extraNames;

    /// <summary>Reads a CSV with a header into raw input for <paramref name="schema"/>.</summary>
    /// <param name="csvPath">The file.</param>
    /// <param name="schema">Fitted features; every feature must be a column of the file.</param>
    /// <param name="extraColumns">Other columns to keep as text (e.g. "label"); each must be in the header.</param>
    /// <param name="cancellationToken">Checked every few thousand rows.</param>
    /// <exception cref="CsvFormatException">Malformed CSV, a missing column, or an invalid cell (names line and column).</exception>
    public static FeatureTable Load(string csvPath, FeatureSchema schema, IEnumerable<string>? extraColumns = null,
        CancellationToken cancellationToken = default)
    {
        using var reader = CsvReader.Open(csvPath);
        return Load(reader, schema, extraColumns, cancellationToken);
    }

    /// <summary>Reads the remaining records of <paramref name="reader"/>; see <see cref="Load(string, FeatureSchema, IEnumerable{string}?, CancellationToken)"/>.</summary>
    public static FeatureTable Load(CsvReader reader, FeatureSchema schema, IEnumerable<string>? extraColumns = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(reader);
        ArgumentNullException.ThrowIfNull(schema);
        var width = schema.Count;
        var columns = new int[width];
        for (var f = 0; f < width; f++)
            columns[f] = RequireColumn(reader, schema.Features[f].Name, "a feature of the model");
        var extraNames = extraColumns?.Distinct(StringComparer.Ordinal).ToArray() ?? [];
        var extraIndex = extraNames.Select(name => RequireColumn(reader, name, "requested")).ToArray();
        var extraValues = extraNames.Select(_ => new List<string>()).ToArray();

        var capacity = 1024;
        var x = new float[capacity * width];
        var mask = new float[capacity * width];
        var lines = new long[capacity];
        var rows = 0;
        while (reader.ReadRecord())
        {
            if ((rows & 0xFFF) == 0)
                cancellationToken.ThrowIfCancellationRequested();
            if (rows == capacity)
            {
                if ((long)capacity * 2 * width > Array.MaxLength)
                {
                    throw new CsvFormatException(
                        $"line {reader.Line}: the table would exceed {Array.MaxLength} cells ({rows} rows × {width} features); sample the file",
                        reader.Line);
                }

                capacity *= 2;
                Array.Resize(ref x, capacity * width);
                Array.Resize(ref mask, capacity * width);
                Array.Resize(ref lines, capacity);
            }

            var offset = rows * width;
            for (var f = 0; f < width; f++)
            {
                var cell = reader[columns[f]];
                if (!schema.TryEncode(f, cell, out x[offset + f], out mask[offset + f]))
                    throw InvalidCell(reader.Line, schema.Features[f], cell);
            }

            for (var e = 0; e < extraIndex.Length; e++)
                extraValues[e].Add(reader.GetString(extraIndex[e]));
            lines[rows++] = reader.Line;
        }

        Array.Resize(ref x, rows * width);
        Array.Resize(ref mask, rows * width);
        Array.Resize(ref lines, rows);
        var extra = new Dictionary<string, string[]>(StringComparer.Ordinal);
        for (var e = 0; e < extraNames.Length; e++)
            extra.Add(extraNames[e], [.. extraValues[e]]);
        return new FeatureTable(schema, x, mask, lines, extra);
    }

    /// <summary>Raw values of row <paramref name="row"/> (F floats).</summary>
    public ReadOnlySpan<float> RowX(int row) => X.AsSpan(row * FeatureCount, FeatureCount);

    /// <summary>Mask of row <paramref name="row"/> (F floats).</summary>
    public ReadOnlySpan<float> RowMask(int row) => Mask.AsSpan(row * FeatureCount, FeatureCount);

    /// <summary>
    /// The engine's training input (contract), N×F row-major: standardized z for numerics, the vocabulary index
    /// for categoricals, 0/1 for binaries, 0 where missing. Pair it with <see cref="Mask"/>.
    /// </summary>
    public float[] StandardizedValues()
    {
        var values = new float[X.Length];
        Schema.Standardize(X, Mask, values);
        return values;
    }

    /// <summary>The text values of an extra column loaded with the table.</summary>
    public IReadOnlyList<string> GetExtraColumn(string name) => _extra.TryGetValue(name, out var values)
        ? values
        : throw new ArgumentException($"column '{name}' was not loaded with the table; pass it in extraColumns", nameof(name));

    /// <summary>
    /// Reads an extra column as anomaly labels: 1 = anomaly, 0 = normal. Accepts 0/1 (also 0.0/1.0) and
    /// true/false, case-insensitive.
    /// </summary>
    /// <exception cref="CsvFormatException">A missing or unrecognized label (names the line and column).</exception>
    public int[] GetLabels(string column)
    {
        var values = GetExtraColumn(column);
        var labels = new int[values.Count];
        for (var i = 0; i < labels.Length; i++)
        {
            var text = values[i].AsSpan().Trim();
            labels[i] =
                text.Equals("true", StringComparison.OrdinalIgnoreCase) ? 1
                : text.Equals("false", StringComparison.OrdinalIgnoreCase) ? 0
                : CellText.TryParseNumber(text, out var number) && number is 0 or 1 ? (int)number
                : throw new CsvFormatException(
                    $"line {Lines[i]}, column '{column}': label '{CsvFormatException.Excerpt(text)}' is not 0/1 or true/false (1 = anomaly)",
                    Lines[i], column);
        }

        return labels;
    }

    /// <summary>A new table with the given rows (in the given order), e.g. a train/validation split. Copies.</summary>
    public FeatureTable Select(ReadOnlySpan<int> rows)
    {
        var width = FeatureCount;
        var x = new float[rows.Length * width];
        var mask = new float[rows.Length * width];
        var lines = new long[rows.Length];
        var count = rows.Length;
        var extra = _extra.ToDictionary(kv => kv.Key, _ => new string[count], StringComparer.Ordinal);
        for (var i = 0; i < rows.Length; i++)
        {
            var row = rows[i];
            if ((uint)row >= (uint)RowCount)
                throw new ArgumentOutOfRangeException(nameof(rows), row, $"the table has {RowCount} rows");
            RowX(row).CopyTo(x.AsSpan(i * width));
            RowMask(row).CopyTo(mask.AsSpan(i * width));
            lines[i] = Lines[row];
            foreach (var (name, values) in _extra)
                extra[name][i] = values[row];
        }

        return new FeatureTable(Schema, x, mask, lines, extra);
    }

    private static int RequireColumn(CsvReader reader, string name, string why)
    {
        var index = reader.IndexOf(name);
        if (index >= 0)
            return index;
        throw new CsvFormatException(
            $"line 1: column '{name}' ({why}) is not in the CSV header; the header has: {string.Join(", ", reader.Header)}",
            1, name);
    }

    private static CsvFormatException InvalidCell(long line, FittedFeature feature, ReadOnlySpan<char> cell)
    {
        var expected = feature.Kind == FeatureKind.Numeric
            ? "is not a number (the feature is numeric)"
            : $"is not a binary value (expected one of {string.Join(", ", feature.FalseTokens.Concat(feature.TrueTokens))})";
        return new CsvFormatException(
            $"line {line}, column '{feature.Name}': '{CsvFormatException.Excerpt(cell.Trim())}' {expected}", line, feature.Name);
    }
}
