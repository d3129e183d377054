using System.Globalization;

namespace AnomalyVae.Model;

/// <summary>
/// How the text of one cell (a CSV field or an event's string value) is read, shared by spec inference, fitting
/// and encoding so that all three agree. Cells are trimmed of surrounding white space before any rule applies.
/// </summary>
public static class CellText
{
    /// <summary>
    /// Tokens that mean "no value" (matched case-insensitively after trimming): the empty string, NA, N/A, NaN,
    /// null, None. A missing cell is encoded x = 0, mask = 0.
    /// </summary>
    public static IReadOnlyList<string> MissingTokens { get; } = ["", "NA", "N/A", "NaN", "null", "None"];

    /// <summary>Binary tokens read as 0 (case-insensitive).</summary>
    public static IReadOnlyList<string> StandardFalseTokens { get; } = ["0", "false", "no", "f", "n"];

    /// <summary>Binary tokens read as 1 (case-insensitive).</summary>
    public static IReadOnlyList<string> StandardTrueTokens { get; } = ["1", "true", "yes", "t", "y"];

    /// <summary>Whether a (possibly untrimmed) cell is one of <see cref="MissingTokens"/>.</summary>
    public static bool IsMissing(ReadOnlySpan<char> cell)
    {
        cell = cell.Trim();
        return cell.Length switch
        {
            0 => true,
            2 => cell.Equals("NA", StringComparison.OrdinalIgnoreCase),
            3 => cell.Equals("N/A", StringComparison.OrdinalIgnoreCase) || cell.Equals("NaN", StringComparison.OrdinalIgnoreCase),
            4 => cell.Equals("null", StringComparison.OrdinalIgnoreCase) || cell.Equals("None", StringComparison.OrdinalIgnoreCase),
            _ => false,
        };
    }

    /// <summary>
    /// Parses a number in invariant culture (sign, decimal point, exponent; no thousands separators).
    /// "Infinity", "-Infinity", "inf", "-inf" parse to infinities; callers treat non-finite values as missing.
    /// </summary>
    public static bool TryParseNumber(ReadOnlySpan<char> cell, out double value)
    {
        cell = cell.Trim();
        if (double.TryParse(cell, NumberStyles.Float, CultureInfo.InvariantCulture, out value))
            return true;

        // "inf" is what Python/NumPy write; .NET only knows "Infinity".
        if (cell.Equals("inf", StringComparison.OrdinalIgnoreCase) || cell.Equals("+inf", StringComparison.OrdinalIgnoreCase))
        {
            value = double.PositiveInfinity;
            return true;
        }

        if (cell.Equals("-inf", StringComparison.OrdinalIgnoreCase))
        {
            value = double.NegativeInfinity;
            return true;
        }

        return false;
    }

    /// <summary>Reads a standard binary token; -1 when the cell is not one.</summary>
    public static int StandardBit(ReadOnlySpan<char> cell)
    {
        cell = cell.Trim();
        foreach (var token in StandardTrueTokens)
        {
            if (cell.Equals(token, StringComparison.OrdinalIgnoreCase))
                return 1;
        }

        foreach (var token in StandardFalseTokens)
        {
            if (cell.Equals(token, StringComparison.OrdinalIgnoreCase))
                return 0;
        }

        return -1;
    }
}
