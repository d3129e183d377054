using System.Buffers;
using System.Text;

namespace AnomalyVae.Model;

/// <summary>
/// Streaming RFC 4180 reader: a header row, then records of exactly as many fields (quoting and edge cases:
/// docs/cli.md#csv-input). Fields are not trimmed (that is <see cref="FeatureSchema"/>'s job) and their spans are valid
/// until the next <see cref="ReadRecord"/>; a record allocates nothing unless the caller asks for strings.
/// </summary>
public sealed class CsvReader : IDisposable
{
    /// <summary>A record longer than this is almost certainly an unterminated quote swallowing the file.</summary>
    public const int MaxRecordChars = 16 * 1024 * 1024;

    private static readonly SearchValues<char> s_unquotedStops = SearchValues.Create(",\"\r\n");
    private static readonly SearchValues<char> s_quotedStops = SearchValues.Create("\"\r\n");

    private readonly TextReader _reader;
    private readonly bool _leaveOpen;
    private readonly char[] _buffer;
    private readonly string[] _header;
    private readonly Dictionary<string, int> _headerIndex;
    private int _position;
    private int _length;
    private bool _endOfInput;
    private char[] _record = new char[4096];
    private int _recordLength;
    private int[] _fieldEnds = new int[64];
    private int _fieldCount;
    private long _nextLine = 1;

    /// <summary>Reads the header row from <paramref name="reader"/>.</summary>
    /// <exception cref="CsvFormatException">No header row, or a duplicate column name.</exception>
    public CsvReader(TextReader reader, bool leaveOpen = false, int bufferSize = 64 * 1024)
    {
        ArgumentNullException.ThrowIfNull(reader);
        ArgumentOutOfRangeException.ThrowIfLessThan(bufferSize, 16);
        _reader = reader;
        _leaveOpen = leaveOpen;
        _buffer = new char[bufferSize];

        // StreamReader strips a BOM itself; a TextReader over a string may still start with one.
        if (Fill() && _buffer[0] == '\uFEFF')
            _position = 1;

        if (!ReadFields())
            throw new CsvFormatException("line 1: the file is empty; expected a header row", 1);

        _header = new string[_fieldCount];
        _headerIndex = new Dictionary<string, int>(_fieldCount, StringComparer.Ordinal);
        for (var i = 0; i < _fieldCount; i++)
        {
            // Header names are trimmed: "a, b" is a common way to write columns a and b.
            var name = this[i].Trim().ToString();
            if (!_headerIndex.TryAdd(name, i))
                throw new CsvFormatException($"line {Line}: duplicate column name '{name}' in the header", Line, name);
            _header[i] = name;
        }
    }

    /// <summary>Column names from the header row, trimmed, in file order.</summary>
    public IReadOnlyList<string> Header => _header;

    /// <summary>1-based line on which the current record (after <see cref="ReadRecord"/>) starts.</summary>
    public long Line { get; private set; }

    /// <summary>Number of fields of the current record (always the header's count after a successful read).</summary>
    public int FieldCount => _fieldCount;

    /// <summary>The unescaped content of field <paramref name="index"/> of the current record.</summary>
    public ReadOnlySpan<char> this[int index]
    {
        get
        {
            if ((uint)index >= (uint)_fieldCount)
                throw new ArgumentOutOfRangeException(nameof(index), index, $"the record has {_fieldCount} fields");
            var start = index == 0 ? 0 : _fieldEnds[index - 1];
            return _record.AsSpan(start, _fieldEnds[index] - start);
        }
    }

    /// <summary>Opens a UTF-8 file (BOM optional) for sequential reading.</summary>
    public static CsvReader Open(string path)
    {
        var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, FileOptions.SequentialScan);
        try
        {
            return new CsvReader(new StreamReader(stream, Encoding.UTF8, detectEncodingFromByteOrderMarks: true, bufferSize: 1 << 16));
        }
        catch
        {
            stream.Dispose();
            throw;
        }
    }

    /// <summary>Index of the header column named <paramref name="column"/> (ordinal match), or -1.</summary>
    public int IndexOf(string column) => _headerIndex.TryGetValue(column, out var i) ? i : -1;

    /// <summary>Field <paramref name="index"/> of the current record as a new string.</summary>
    public string GetString(int index) => this[index].ToString();

    /// <summary>Advances to the next record.</summary>
    /// <returns>false at the end of the input.</returns>
    /// <exception cref="CsvFormatException">Ragged row, unterminated quote, or text after a closing quote.</exception>
    public bool ReadRecord()
    {
        if (!ReadFields())
            return false;
        if (_fieldCount != _header.Length)
        {
            throw new CsvFormatException(
                $"line {Line}: expected {_header.Length} fields (as in the header) but found {_fieldCount}", Line);
        }

        return true;
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        if (!_leaveOpen)
            _reader.Dispose();
    }

    private bool Fill()
    {
        if (_endOfInput)
            return false;
        _length = _reader.Read(_buffer, 0, _buffer.Length);
        _position = 0;
        if (_length == 0)
            _endOfInput = true;
        return _length > 0;
    }

    /// <summary>Next char without consuming it; -1 at the end of the input.</summary>
    private int Peek() => _position < _length || Fill() ? _buffer[_position] : -1;

    /// <summary>Parses one physical record into <see cref="_record"/>/<see cref="_fieldEnds"/>, skipping empty lines.</summary>
    private bool ReadFields()
    {
        // Skip empty lines; stop at the first char of a record or the end.
        while (true)
        {
            var c = Peek();
            if (c == -1)
            {
                _fieldCount = 0;
                return false;
            }

            if (c == '\n')
            {
                _position++;
                _nextLine++;
            }
            else if (c == '\r')
            {
                _position++;
                _nextLine++;
                if (Peek() == '\n')
                    _position++;
            }
            else
            {
                break;
            }
        }

        Line = _nextLine;
        _recordLength = 0;
        _fieldCount = 0;
        while (true)
        {
            if (Peek() == '"')
                ReadQuotedField();
            else
                ReadUnquotedField();

            EndField();
            var terminator = Peek();
            if (terminator == ',')
            {
                _position++;
                continue;
            }

            if (terminator == '\n')
            {
                _position++;
                _nextLine++;
            }
            else if (terminator == '\r')
            {
                _position++;
                _nextLine++;
                if (Peek() == '\n')
                    _position++;
            }

            return true;
        }
    }

    private void ReadUnquotedField()
    {
        while (_position < _length || Fill())
        {
            var span = _buffer.AsSpan(_position, _length - _position);
            var stop = span.IndexOfAny(s_unquotedStops);
            if (stop < 0)
            {
                Append(span);
                _position = _length;
                continue;
            }

            Append(span[..stop]);
            _position += stop;
            if (span[stop] != '"')
                return;

            // A quote inside an unquoted field (e.g. 5" screen) is not an RFC 4180 construct; keep it literally.
            Append("\"");
            _position++;
        }
    }

    private void ReadQuotedField()
    {
        var startLine = _nextLine;
        _position++; // opening quote
        while (true)
        {
            if (_position >= _length && !Fill())
            {
                throw new CsvFormatException(
                    $"line {startLine}: unterminated quoted field (the quote opened on line {startLine} is never closed)", startLine);
            }

            var span = _buffer.AsSpan(_position, _length - _position);
            var stop = span.IndexOfAny(s_quotedStops);
            if (stop < 0)
            {
                Append(span);
                _position = _length;
                continue;
            }

            Append(span[..stop]);
            var c = span[stop];
            _position += stop + 1;
            if (c == '"')
            {
                if (Peek() == '"')
                {
                    Append("\"");
                    _position++;
                    continue;
                }

                var next = Peek();
                if (next is not (-1 or ',' or '\r' or '\n'))
                {
                    throw new CsvFormatException(
                        $"line {_nextLine}: unexpected character '{(char)next}' after the closing quote of a field (a quote inside a quoted field must be doubled)",
                        _nextLine);
                }

                return;
            }

            // A line break inside quotes is data; keep it verbatim but count the physical line.
            Append(c == '\r' ? "\r" : "\n");
            if (c == '\r' && Peek() == '\n')
            {
                Append("\n");
                _position++;
            }

            _nextLine++;
        }
    }

    private void Append(ReadOnlySpan<char> chars)
    {
        if (chars.IsEmpty)
            return;
        var needed = _recordLength + chars.Length;
        if (needed > _record.Length)
        {
            if (needed > MaxRecordChars)
            {
                throw new CsvFormatException(
                    $"line {Line}: record longer than {MaxRecordChars} characters (an unterminated quote?)", Line);
            }

            Array.Resize(ref _record, Math.Min(MaxRecordChars, Math.Max(needed, _record.Length * 2)));
        }

        chars.CopyTo(_record.AsSpan(_recordLength));
        _recordLength = needed;
    }

    private void EndField()
    {
        if (_fieldCount == _fieldEnds.Length)
            Array.Resize(ref _fieldEnds, _fieldEnds.Length * 2);
        _fieldEnds[_fieldCount++] = _recordLength;
    }
}
