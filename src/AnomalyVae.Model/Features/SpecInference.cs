using System.Globalization;

namespace AnomalyVae.Model;

/// <summary>What <see cref="SpecInference"/> decided for one column, and why (for the CLI to show).</summary>
/// <param name="Column">Header name.</param>
/// <param name="Kind">The feature kind, or null when the column is ignored.</param>
/// <param name="Log">Numeric: whether a log transform is suggested.</param>
/// <param name="Reason">One human-readable sentence.</param>
public sealed record ColumnDecision(string Column, FeatureKind? Kind, bool Log, string Reason)
{
    /// <summary>An ignored column a windowed model could use: the entity key or the event time (null: neither).</summary>
    public WindowRole? Role { get; init; }
}

/// <summary>What an ignored column can be to a windowed model (<see cref="WindowDefinition"/>).</summary>
public enum WindowRole
{
    Entity,
    Order,
}

/// <summary>
/// Proposes a <see cref="FeatureSpec"/> from a sample of rows: label, empty, id and timestamp columns are ignored, the
/// rest become binary, categorical or numeric (a log transform suggested for non-negative, strongly right-skewed
/// columns). The same sample always gives the same spec. The rules, in order: docs/cli.md#feature-spec.
/// </summary>
public static class SpecInference
{
    /// <summary>Rows read by <see cref="ReadSample"/> unless told otherwise (the first rows of the file).</summary>
    public const int DefaultSampleRows = 10_000;

    /// <summary>An all-integer column with at most this many distinct values is taken as categorical codes.</summary>
    public const int MaxIntegerCodes = 10;

    /// <summary>
    /// An id-named column with more distinct values than this is an entity key, not a feature: one-hot over
    /// thousands of accounts is wide and every new entity would land in the unknown bucket. A few codes
    /// (site_id = 1..3) stay categorical.
    /// </summary>
    public const int MaxIdCodes = 10;

    /// <summary>Below this many values, "all distinct" is too weak a sign of an id column to drop it.</summary>
    public const int MinRowsForDistinctId = 10;

    /// <summary>Below this many values skewness is too noisy to suggest a log transform.</summary>
    public const int MinRowsForLog = 20;

    /// <summary>Sample skewness above which a log transform is suggested.</summary>
    public const double LogSkewness = 2;

    /// <summary>p99 / median ratio above which a log transform is suggested.</summary>
    public const double LogTailRatio = 10;

    /// <summary>Column names taken as anomaly labels and therefore never used as features.</summary>
    public static IReadOnlyList<string> LabelNames { get; } = ["label", "class", "target", "is_anomaly", "anomaly", "anomaly_kind", "y", "outlier"];

    /// <summary>Reads the header and the first <paramref name="maxRows"/> records of a CSV file.</summary>
    public static (IReadOnlyList<string> Header, IReadOnlyList<IReadOnlyList<string>> Rows) ReadSample(
        string csvPath, int maxRows = DefaultSampleRows)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxRows);
        using var reader = CsvReader.Open(csvPath);
        var rows = new List<IReadOnlyList<string>>();
        while (rows.Count < maxRows && reader.ReadRecord())
        {
            var row = new string[reader.FieldCount];
            for (var i = 0; i < row.Length; i++)
                row[i] = reader.GetString(i);
            rows.Add(row);
        }

        return (reader.Header, rows);
    }

    /// <summary>Proposes a spec: features and ignored columns, both in column order.</summary>
    /// <exception cref="FeatureSpecException">No column qualifies as a feature (the message gives each column's reason).</exception>
    public static FeatureSpec Infer(IReadOnlyList<string> header, IReadOnlyList<IReadOnlyList<string>> rows)
    {
        var decisions = Decide(header, rows);
        var features = decisions.Where(d => d.Kind is not null).Select(d => new FeatureDefinition(d.Column, d.Kind!.Value, d.Log)).ToList();
        if (features.Count == 0)
        {
            throw new FeatureSpecException(
                [.. decisions.Select(d => $"column '{d.Column}': {d.Reason}").Prepend("no column looks like a feature")]);
        }

        return new FeatureSpec(features, decisions.Where(d => d.Kind is null).Select(d => d.Column));
    }

    /// <summary>
    /// The entity and order columns for a windowed model where obvious: the first id-named column with repeated
    /// values and the first ISO-8601 timestamp column (either null when there is none).
    /// </summary>
    public static (string? Entity, string? Order) SuggestWindow(IReadOnlyList<ColumnDecision> decisions)
    {
        ArgumentNullException.ThrowIfNull(decisions);
        return (decisions.FirstOrDefault(d => d.Role == WindowRole.Entity)?.Column, decisions.FirstOrDefault(d => d.Role == WindowRole.Order)?.Column);
    }

    /// <summary>The per-column decisions behind <see cref="Infer"/>, in column order.</summary>
    public static IReadOnlyList<ColumnDecision> Decide(IReadOnlyList<string> header, IReadOnlyList<IReadOnlyList<string>> rows)
    {
        ArgumentNullException.ThrowIfNull(header);
        ArgumentNullException.ThrowIfNull(rows);
        for (var r = 0; r < rows.Count; r++)
        {
            if (rows[r].Count != header.Count)
                throw new ArgumentException($"sample row {r} has {rows[r].Count} cells for {header.Count} columns", nameof(rows));
        }

        var decisions = new ColumnDecision[header.Count];
        for (var c = 0; c < header.Count; c++)
        {
            var values = new List<string>(rows.Count);
            foreach (var row in rows)
            {
                if (!CellText.IsMissing(row[c]))
                    values.Add(row[c].Trim());
            }

            decisions[c] = DecideColumn(header[c], values);
        }

        return decisions;
    }

    private static ColumnDecision DecideColumn(string name, List<string> values)
    {
        static ColumnDecision Ignore(string name, string reason) => new(name, null, false, reason);

        if (LabelNames.Contains(name, StringComparer.OrdinalIgnoreCase))
            return Ignore(name, "ignored: named like an anomaly label");
        if (values.Count == 0)
            return Ignore(name, "ignored: no value in the sample");

        var distinct = values.Distinct(StringComparer.Ordinal).Count();
        var allDistinct = distinct == values.Count;
        var idNamed = name.Equals("id", StringComparison.OrdinalIgnoreCase) || name.EndsWith("_id", StringComparison.OrdinalIgnoreCase);
        if (idNamed && allDistinct)
            return Ignore(name, "ignored: named like an id and every value is distinct");
        if (idNamed && distinct > MaxIdCodes)
            return Ignore(name, $"ignored: named like an id with {distinct} distinct values (> {MaxIdCodes}), an entity key") with { Role = allDistinct ? null : WindowRole.Entity };

        var tokens = values.Distinct(StringComparer.OrdinalIgnoreCase).ToArray();
        if (tokens.Length == 2 && CellText.StandardBit(tokens[0]) is var b0 && b0 >= 0 && CellText.StandardBit(tokens[1]) is var b1 && b1 >= 0 && b0 != b1)
            return new ColumnDecision(name, FeatureKind.Binary, false, $"binary: two values ({tokens[0]}, {tokens[1]})");

        var numbers = new double[values.Count];
        var allNumbers = true;
        for (var i = 0; i < values.Count && allNumbers; i++)
            allNumbers = CellText.TryParseNumber(values[i], out numbers[i]);
        if (allNumbers)
        {
            var integers = numbers.All(v => double.IsFinite(v) && Math.Abs(v) < 1e15 && v == Math.Floor(v));
            if (integers && distinct <= MaxIntegerCodes)
                return new ColumnDecision(name, FeatureKind.Categorical, false, $"categorical: integer codes with {distinct} distinct values (≤ {MaxIntegerCodes})");
            var (log, why) = SuggestLog(numbers);
            return new ColumnDecision(name, FeatureKind.Numeric, log, $"numeric: {distinct} distinct values; {why}");
        }

        if (values.All(IsIsoTimestamp))
            return Ignore(name, "ignored: ISO-8601 timestamps") with { Role = WindowRole.Order };
        if (allDistinct && values.Count >= MinRowsForDistinctId)
            return Ignore(name, $"ignored: id-like, all {values.Count} values distinct");
        return new ColumnDecision(name, FeatureKind.Categorical, false, $"categorical: text with {distinct} distinct values");
    }

    private static (bool Log, string Why) SuggestLog(double[] numbers)
    {
        var finite = numbers.Where(double.IsFinite).ToArray();
        if (finite.Length < MinRowsForLog)
            return (false, $"too few values ({finite.Length} < {MinRowsForLog}) to judge skew");
        Array.Sort(finite);
        if (finite[0] < 0)
            return (false, "has negative values, no log");

        double mean = finite.Average(), m2 = 0, m3 = 0;
        foreach (var v in finite)
        {
            var d = v - mean;
            m2 += d * d;
            m3 += d * d * d;
        }

        m2 /= finite.Length;
        m3 /= finite.Length;
        var skewness = m2 > 0 ? m3 / Math.Pow(m2, 1.5) : 0;
        var median = FeatureSchema.Quantile(finite, 0.5);
        var p99 = FeatureSchema.Quantile(finite, 0.99);
        var heavyTail = median > 0 ? p99 / median > LogTailRatio : p99 > 0;
        var text = string.Create(CultureInfo.InvariantCulture, $"skewness {skewness:0.##}, p99 {p99:G4}, median {median:G4}");
        return skewness > LogSkewness && heavyTail
            ? (true, $"log suggested ({text})")
            : (false, $"no log ({text})");
    }

    /// <summary>yyyy-MM-dd at the start, and the whole value parses as a date/time with optional offset.</summary>
    private static bool IsIsoTimestamp(string value) =>
        value.Length >= 10
        && char.IsAsciiDigit(value[0]) && char.IsAsciiDigit(value[1]) && char.IsAsciiDigit(value[2]) && char.IsAsciiDigit(value[3])
        && value[4] == '-' && char.IsAsciiDigit(value[5]) && char.IsAsciiDigit(value[6])
        && value[7] == '-' && char.IsAsciiDigit(value[8]) && char.IsAsciiDigit(value[9])
        && DateTimeOffset.TryParse(value, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out _);
}
