namespace AnomalyVae.Model;

/// <summary>
/// A CSV file that cannot be read as the data it should hold: broken structure (ragged row, unterminated quote)
/// or a cell that does not fit its column (a numeric feature that is not a number).
/// </summary>
public sealed class CsvFormatException : FormatException
{
    /// <summary>Creates the exception; <paramref name="message"/> should already name the line (and column).</summary>
    public CsvFormatException(string message, long line, string? column = null, Exception? innerException = null)
        : base(message, innerException)
    {
        Line = line;
        Column = column;
    }

    /// <summary>1-based physical line of the file where the offending record (or quoted field) starts.</summary>
    public long Line { get; }

    /// <summary>Column name when the problem is one cell; null for structural problems.</summary>
    public string? Column { get; }

    /// <summary>Shortens a cell for an error message so that a huge field cannot flood a log.</summary>
    internal static string Excerpt(ReadOnlySpan<char> value)
    {
        const int max = 64;
        return value.Length <= max ? value.ToString() : string.Concat(value[..max], "…");
    }
}
