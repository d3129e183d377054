using AnomalyVae.Model;

namespace AnomalyVae.UnitTests.Model;

public class CsvWriterTests
{
    [Fact]
    public void QuotesOnlyWhenNeeded()
    {
        var text = new StringWriter();
        using (var writer = new CsvWriter(text))
        {
            writer.WriteRecord(["plain", "with,comma", "with \"quote\"", "two\nlines", "cr\rhere", ""]);
        }

        Assert.Equal("plain,\"with,comma\",\"with \"\"quote\"\"\",\"two\nlines\",\"cr\rhere\",\n", text.ToString());
    }

    [Fact]
    public void NumbersAreInvariantAndRoundTrip()
    {
        var text = new StringWriter();
        using (var writer = new CsvWriter(text, newLine: "\r\n"))
        {
            writer.WriteField(0.1 + 0.2);
            writer.WriteField(1.5f);
            writer.WriteField(-42L);
            writer.WriteField(double.NaN);
            writer.EndRecord();
        }

        Assert.Equal("0.30000000000000004,1.5,-42,NaN\r\n", text.ToString());
    }

    [Fact]
    public void LoneEmptyFieldIsWrittenAsQuotesSoTheRowSurvives()
    {
        var text = new StringWriter();
        using (var writer = new CsvWriter(text))
        {
            writer.WriteRecord(["note"]);
            writer.WriteRecord([""]);
            writer.WriteRecord(["x"]);
        }

        using var reader = new CsvReader(new StringReader(text.ToString()));
        Assert.True(reader.ReadRecord());
        Assert.Equal("", reader.GetString(0));
        Assert.True(reader.ReadRecord());
        Assert.Equal("x", reader.GetString(0));
    }

    [Fact]
    public void WhatTheWriterWritesTheReaderReadsBack()
    {
        var random = new Random(7);
        const string alphabet = "ab ,\"\r\n\u00e9\u6f22";
        var rows = Enumerable.Range(0, 300)
            .Select(_ => Enumerable.Range(0, 4)
                .Select(_ => new string([.. Enumerable.Range(0, random.Next(0, 8)).Select(_ => alphabet[random.Next(alphabet.Length)])]))
                .ToArray())
            .ToList();

        var text = new StringWriter();
        using (var writer = new CsvWriter(text))
        {
            writer.WriteRecord(["c1", "c2", "c3", "c4"]);
            foreach (var row in rows)
                writer.WriteRecord(row);
        }

        using var reader = new CsvReader(new StringReader(text.ToString()));
        var read = new List<string[]>();
        while (reader.ReadRecord())
            read.Add([.. Enumerable.Range(0, 4).Select(reader.GetString)]);

        // Rows whose fields are all empty are written as ",,," which is not an empty line, so nothing is lost.
        Assert.Equal(rows, read);
    }

    [Fact]
    public void RejectsUnknownNewLine()
    {
        Assert.Throws<ArgumentException>(() => new CsvWriter(new StringWriter(), newLine: ";"));
    }
}
