using System.Buffers;
using System.Globalization;
using System.Text;

namespace AnomalyVae.Model;

/// <summary>
/// RFC 4180 writer for score and sample outputs. A field is quoted only when it must be (it contains a comma,
/// quote, CR or LF); quotes are doubled. Numbers are written in invariant culture, round-trippable.
/// Lines end with LF by default (pass "\r\n" for strict RFC 4180); <see cref="CsvReader"/> reads both.
/// </summary>
public sealed class CsvWriter : IDisposable
{
    private static readonly SearchValues<char> s_needsQuotes = SearchValues.Create(",\"\r\n");

    private readonly TextWriter _writer;
    private readonly bool _leaveOpen;
    private readonly string _newLine;
    private readonly char[] _number = new char[32];
    private int _fieldsInRecord;
    private bool _lastFieldEmpty;

    /// <summary>Writes to <paramref name="writer"/>.</summary>
    public CsvWriter(TextWriter writer, bool leaveOpen = false, string newLine = "\n")
    {
        ArgumentNullException.ThrowIfNull(writer);
        if (newLine is not ("\n" or "\r\n"))
            throw new ArgumentException("newLine must be \"\\n\" or \"\\r\\n\"", nameof(newLine));
        _writer = writer;
        _leaveOpen = leaveOpen;
        _newLine = newLine;
    }

    /// <summary>Creates (or overwrites) a UTF-8 file without a byte-order mark.</summary>
    public static CsvWriter Create(string path) =>
        new(new StreamWriter(path, append: false, new UTF8Encoding(encoderShouldEmitUTF8Identifier: false), 1 << 16));

    /// <summary>Writes one text field, quoting it if needed.</summary>
    public void WriteField(ReadOnlySpan<char> value)
    {
        BeginField();
        _lastFieldEmpty = value.IsEmpty;
        if (value.IndexOfAny(s_needsQuotes) < 0)
        {
            _writer.Write(value);
            return;
        }

        _writer.Write('"');
        while (true)
        {
            var quote = value.IndexOf('"');
            if (quote < 0)
            {
                _writer.Write(value);
                break;
            }

            _writer.Write(value[..(quote + 1)]);
            _writer.Write('"');
            value = value[(quote + 1)..];
        }

        _writer.Write('"');
    }

    /// <summary>Writes a double with the shortest round-trippable representation (NaN as "NaN").</summary>
    public void WriteField(double value)
    {
        value.TryFormat(_number, out var written, "R", CultureInfo.InvariantCulture);
        WriteField(_number.AsSpan(0, written));
    }

    /// <summary>Writes a float with the shortest round-trippable representation.</summary>
    public void WriteField(float value)
    {
        value.TryFormat(_number, out var written, "R", CultureInfo.InvariantCulture);
        WriteField(_number.AsSpan(0, written));
    }

    /// <summary>Writes an integer.</summary>
    public void WriteField(long value)
    {
        value.TryFormat(_number, out var written, default, CultureInfo.InvariantCulture);
        WriteField(_number.AsSpan(0, written));
    }

    /// <summary>Writes all <paramref name="fields"/> and ends the record.</summary>
    public void WriteRecord(IEnumerable<string> fields)
    {
        ArgumentNullException.ThrowIfNull(fields);
        foreach (var field in fields)
            WriteField(field);
        EndRecord();
    }

    /// <summary>Ends the current record.</summary>
    public void EndRecord()
    {
        // A lone empty field would be an empty line, which readers (ours included) skip; write it as "".
        if (_fieldsInRecord == 1 && _lastFieldEmpty)
            _writer.Write("\"\"");
        _writer.Write(_newLine);
        _fieldsInRecord = 0;
    }

    /// <summary>Flushes buffered output.</summary>
    public void Flush() => _writer.Flush();

    /// <inheritdoc/>
    public void Dispose()
    {
        if (_leaveOpen)
            _writer.Flush();
        else
            _writer.Dispose();
    }

    private void BeginField()
    {
        if (_fieldsInRecord++ > 0)
            _writer.Write(',');
    }
}
