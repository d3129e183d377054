using System.Text;
using AnomalyVae.Model;

namespace AnomalyVae.UnitTests.Model;

public class CsvReaderTests
{
    private static List<string[]> ReadAll(string text, int bufferSize = 64 * 1024) => ReadAll(text, bufferSize, out _);

    private static List<string[]> ReadAll(string text, int bufferSize, out List<long> lines)
    {
        using var reader = new CsvReader(new StringReader(text), bufferSize: bufferSize);
        List<string[]> rows = [[.. reader.Header]];
        lines = [];
        while (reader.ReadRecord())
        {
            rows.Add([.. Enumerable.Range(0, reader.FieldCount).Select(reader.GetString)]);
            lines.Add(reader.Line);
        }

        return rows;
    }

    [Fact]
    public void ReadsHeaderAndPlainRecords()
    {
        var rows = ReadAll("a,b,c\n1,2,3\n4,,6\n");
        Assert.Equal(["a", "b", "c"], rows[0]);
        Assert.Equal(["1", "2", "3"], rows[1]);
        Assert.Equal(["4", "", "6"], rows[2]);
        Assert.Equal(3, rows.Count);
    }

    [Theory]
    [InlineData("\n")]
    [InlineData("\r\n")]
    [InlineData("\r")]
    public void AcceptsEveryLineEnding(string newline)
    {
        var rows = ReadAll($"a,b{newline}1,2{newline}3,4{newline}");
        Assert.Equal(["3", "4"], rows[2]);
        Assert.Equal(3, rows.Count);
    }

    [Fact]
    public void LastRecordNeedsNoTrailingNewline()
    {
        var rows = ReadAll("a,b\r\n1,2\r\n3,4");
        Assert.Equal(["3", "4"], rows[^1]);
    }

    [Fact]
    public void QuotedFieldsKeepCommasQuotesAndLineBreaks()
    {
        var rows = ReadAll("name,note\n\"Smith, J\",\"said \"\"hi\"\"\nthen left\"\n\"\",\"x\"\r\n");
        Assert.Equal(["Smith, J", "said \"hi\"\nthen left"], rows[1]);
        Assert.Equal(["", "x"], rows[2]);
    }

    [Fact]
    public void CrLfInsideQuotesIsKeptVerbatim()
    {
        var rows = ReadAll("a\r\n\"x\r\ny\"\r\n");
        Assert.Equal("x\r\ny", rows[1][0]);
    }

    [Fact]
    public void StripsByteOrderMarkFromStringAndFile()
    {
        Assert.Equal("a", ReadAll("\uFEFFa,b\n1,2\n")[0][0]);

        var path = Path.GetTempFileName();
        try
        {
            File.WriteAllText(path, "temp,status\n1.5,ok\n", new UTF8Encoding(encoderShouldEmitUTF8Identifier: true));
            Assert.Equal(0xEF, File.ReadAllBytes(path)[0]); // the BOM really is in the file
            using var reader = CsvReader.Open(path);
            Assert.Equal(["temp", "status"], reader.Header);
            Assert.Equal(0, reader.IndexOf("temp"));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void LineNumbersCountEmbeddedLineBreaksAndSkippedBlankLines()
    {
        // line 1 header, 2 "1,x", 3-4 a quoted two-line field, 5 blank (skipped), 6 "3,z"
        ReadAll("id,v\n1,x\n2,\"y\ny\"\n\n3,z\n", 64 * 1024, out var lines);
        Assert.Equal([2L, 3L, 6L], lines);
    }

    [Fact]
    public void RaggedRowReportsItsLine()
    {
        var e = Assert.Throws<CsvFormatException>(() => ReadAll("a,b,c\n1,2,3\n\"multi\nline\",2,3\n4,5\n"));
        Assert.Equal(5, e.Line);
        Assert.Contains("line 5", e.Message);
        Assert.Contains("expected 3 fields", e.Message);
        Assert.Contains("found 2", e.Message);
    }

    [Fact]
    public void TooManyFieldsIsRaggedToo()
    {
        var e = Assert.Throws<CsvFormatException>(() => ReadAll("a,b\n1,2,\n"));
        Assert.Equal(2, e.Line);
        Assert.Contains("found 3", e.Message);
    }

    [Fact]
    public void UnterminatedQuoteReportsTheLineWhereItOpened()
    {
        var e = Assert.Throws<CsvFormatException>(() => ReadAll("a,b\n1,2\n3,\"never closed\n4,5\n6,7\n"));
        Assert.Equal(3, e.Line);
        Assert.Contains("unterminated", e.Message);
    }

    [Fact]
    public void TextAfterClosingQuoteIsAnError()
    {
        var e = Assert.Throws<CsvFormatException>(() => ReadAll("a,b\n\"x\"y,2\n"));
        Assert.Equal(2, e.Line);
        Assert.Contains("after the closing quote", e.Message);
    }

    [Fact]
    public void QuoteInsideUnquotedFieldIsLiteral()
    {
        Assert.Equal("5\" screen", ReadAll("size,n\n5\" screen,1\n")[1][0]);
    }

    [Fact]
    public void EmptyInputHasNoHeader()
    {
        var e = Assert.Throws<CsvFormatException>(() => ReadAll(""));
        Assert.Contains("empty", e.Message);
        Assert.Throws<CsvFormatException>(() => ReadAll("\n\n"));
    }

    [Fact]
    public void DuplicateHeaderNameIsAnError()
    {
        var e = Assert.Throws<CsvFormatException>(() => ReadAll("a,b,a\n1,2,3\n"));
        Assert.Equal("a", e.Column);
    }

    [Fact]
    public void HeaderNamesAreTrimmedButFieldsAreNot()
    {
        var rows = ReadAll("a, b\n1, 2\n");
        Assert.Equal(["a", "b"], rows[0]);
        Assert.Equal(" 2", rows[1][1]);
    }

    [Fact]
    public void TinyBufferGivesTheSameRecordsAsALargeOne()
    {
        // Every construct split across buffer refills: quotes, doubled quotes, CRLF, embedded breaks.
        var text = "h1,h2,h3\r\n\"a,\"\"b\"\"\",\"c\r\nd\",e\r\nlong value here,\"\",\"\"\"\"\r\n,,\r\n";
        var expected = ReadAll(text, 1 << 16, out var expectedLines);
        for (var size = 16; size < 40; size++)
        {
            Assert.Equal(expected, ReadAll(text, size, out var lines));
            Assert.Equal(expectedLines, lines);
        }

        Assert.Equal(["a,\"b\"", "c\r\nd", "e"], expected[1]);
        Assert.Equal(["long value here", "", "\""], expected[2]);
        Assert.Equal(["", "", ""], expected[3]);
    }

    [Fact]
    public void FieldSpansAreIndexedWithinTheRecord()
    {
        using var reader = new CsvReader(new StringReader("a,b\nxy,z\n"));
        Assert.True(reader.ReadRecord());
        Assert.Equal("xy", reader[0].ToString());
        Assert.Equal("z", reader[1].ToString());
        Assert.Throws<ArgumentOutOfRangeException>(() => reader[2].ToString());
        Assert.False(reader.ReadRecord());
        Assert.False(reader.ReadRecord());
    }

    [Fact]
    public void StreamsLargeInputWithoutHoldingItAsOneString()
    {
        // A TextReader that produces rows on demand: the reader must work through it in fixed memory.
        const int rows = 200_000;
        using var reader = new CsvReader(new GeneratedRows(rows));
        long count = 0;
        double sum = 0;
        while (reader.ReadRecord())
        {
            count++;
            sum += double.Parse(reader[1], provider: System.Globalization.CultureInfo.InvariantCulture);
        }

        Assert.Equal(rows, count);
        Assert.Equal((double)rows * (rows - 1) / 2, sum);
    }

    /// <summary>Yields "i,i\n" for i = 0..rows-1 after a header, never materializing the whole text.</summary>
    private sealed class GeneratedRows(int rows) : TextReader
    {
        private string _pending = "id,value\n";
        private int _next;
        private int _offset;

        public override int Read(char[] buffer, int index, int count)
        {
            var written = 0;
            while (written < count)
            {
                if (_offset == _pending.Length)
                {
                    if (_next == rows)
                        break;
                    _pending = $"{_next},{_next}\n";
                    _next++;
                    _offset = 0;
                }

                var n = Math.Min(count - written, _pending.Length - _offset);
                _pending.CopyTo(_offset, buffer, index + written, n);
                _offset += n;
                written += n;
            }

            return written;
        }
    }
}
