using AnomalyVae.Model;

namespace AnomalyVae.UnitTests.Model;

public sealed class FeatureTableTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("anomalyvae-table-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    private string WriteCsv(string text)
    {
        var path = Path.Combine(_directory, $"{Guid.NewGuid():N}.csv");
        File.WriteAllText(path, text);
        return path;
    }

    private static readonly FeatureSpec s_spec = new(
        [new("temp", FeatureKind.Numeric), new("status", FeatureKind.Categorical), new("door", FeatureKind.Binary)], ["id", "label"]);

    private const string Training = """
        id,status,temp,door,label
        1,ok,20,no,0
        2,ok,22,yes,0
        3,err,24,no,0
        4,ok,NA,no,1
        5,"warn, high",,yes,true

        """;

    [Fact]
    public void LoadsRawInputInSchemaOrderRegardlessOfColumnOrder()
    {
        var path = WriteCsv(Training);
        var schema = FeatureSchema.Fit(s_spec, path);
        var table = FeatureTable.Load(path, schema, ["label", "id"]);

        Assert.Equal(5, table.RowCount);
        Assert.Equal(3, table.FeatureCount);
        // vocabulary: <unknown>, ok (3), err, "warn, high" (1 each, ordinal)
        Assert.Equal(["<unknown>", "ok", "err", "warn, high"], schema.Features[1].Vocabulary);
        Assert.Equal(
            [20, 1, 0, /**/ 22, 1, 1, /**/ 24, 2, 0, /**/ 0, 1, 0, /**/ 0, 3, 1],
            table.X);
        Assert.Equal(
            [1, 1, 1, /**/ 1, 1, 1, /**/ 1, 1, 1, /**/ 0, 1, 1, /**/ 0, 1, 1],
            table.Mask);
        Assert.Equal([2L, 3, 4, 5, 6], table.Lines);
        Assert.Equal([0, 0, 0, 1, 1], table.GetLabels("label"));
        Assert.Equal(["1", "2", "3", "4", "5"], table.GetExtraColumn("id"));
        Assert.Equal(["label", "id"], table.ExtraColumns);
        Assert.Equal([24f, 2, 0], table.RowX(2).ToArray());
    }

    [Fact]
    public void StandardizedValuesFollowTheContract()
    {
        var path = WriteCsv(Training);
        var schema = FeatureSchema.Fit(s_spec, path);
        var table = FeatureTable.Load(path, schema);
        var values = table.StandardizedValues();

        // temp 20, 22, 24: median 22, IQR 2 → scale 2/1.349, then the tail squash k·asinh(z/k) with k = 3·q95(|z|);
        // missing temp → 0; categorical/binary pass through.
        var scale = 2 / 1.349;
        double k = schema.Features[schema.IndexOf("temp")].TailScale;
        Assert.Equal(3 * 1.349, k, 9);
        Assert.Equal((float)(k * Math.Asinh(-2 / scale / k)), values[0], 5);
        Assert.Equal(0f, values[3]);
        Assert.Equal((float)(k * Math.Asinh(2 / scale / k)), values[6], 5);
        Assert.Equal(0f, values[9]);
        Assert.Equal(table.X.Where((_, i) => i % 3 != 0), values.Where((_, i) => i % 3 != 0));
    }

    [Fact]
    public void InvalidNumericCellNamesLineAndColumn()
    {
        var schema = FeatureSchema.Fit(s_spec, WriteCsv(Training));
        var bad = WriteCsv("id,status,temp,door\n1,ok,20,no\n2,\"multi\nline\",21,no\n3,ok,hot,no\n");
        var e = Assert.Throws<CsvFormatException>(() => FeatureTable.Load(bad, schema));
        Assert.Equal(5, e.Line);
        Assert.Equal("temp", e.Column);
        Assert.Contains("line 5, column 'temp': 'hot' is not a number", e.Message);
    }

    [Fact]
    public void UnmappedBinaryTokenNamesTheTokens()
    {
        var schema = FeatureSchema.Fit(s_spec, WriteCsv(Training));
        var e = Assert.Throws<CsvFormatException>(() => FeatureTable.Load(WriteCsv("status,temp,door\nok,1,ajar\n"), schema));
        Assert.Equal("door", e.Column);
        Assert.Contains("'ajar' is not a binary value", e.Message);
        Assert.Contains("yes", e.Message);
    }

    [Fact]
    public void MissingColumnsAreNamed()
    {
        var schema = FeatureSchema.Fit(s_spec, WriteCsv(Training));
        var noDoor = WriteCsv("status,temp\nok,1\n");
        Assert.Contains("column 'door'", Assert.Throws<CsvFormatException>(() => FeatureTable.Load(noDoor, schema)).Message);
        var full = WriteCsv("status,temp,door\nok,1,no\n");
        Assert.Contains("column 'label'", Assert.Throws<CsvFormatException>(() => FeatureTable.Load(full, schema, ["label"])).Message);
    }

    [Fact]
    public void BadLabelNamesLineAndColumn()
    {
        var schema = FeatureSchema.Fit(s_spec, WriteCsv(Training));
        var table = FeatureTable.Load(WriteCsv("status,temp,door,label\nok,1,no,0\nok,2,no,\nok,3,no,1.0\n"), schema, ["label"]);
        var e = Assert.Throws<CsvFormatException>(() => table.GetLabels("label"));
        Assert.Equal(3, e.Line);
        Assert.Equal("label", e.Column);
        Assert.Throws<ArgumentException>(() => table.GetLabels("id"));
    }

    [Fact]
    public void SelectCopiesRowsWithTheirExtras()
    {
        var path = WriteCsv(Training);
        var table = FeatureTable.Load(path, FeatureSchema.Fit(s_spec, path), ["id"]);
        var subset = table.Select([4, 0]);
        Assert.Equal(2, subset.RowCount);
        Assert.Equal(table.RowX(4).ToArray(), subset.RowX(0).ToArray());
        Assert.Equal(table.RowMask(0).ToArray(), subset.RowMask(1).ToArray());
        Assert.Equal(["5", "1"], subset.GetExtraColumn("id"));
        Assert.Equal([6L, 2], subset.Lines);
        Assert.Throws<ArgumentOutOfRangeException>(() => table.Select([5]));
    }

    [Fact]
    public void GrowsPastItsInitialCapacity()
    {
        var lines = Enumerable.Range(0, 5000).Select(i => $"{i % 3},x{i % 5},{(i % 2 == 0 ? "y" : "n")}");
        var path = WriteCsv("temp,status,door\n" + string.Join("\n", lines) + "\n");
        var table = FeatureTable.Load(path, FeatureSchema.Fit(s_spec, path));
        Assert.Equal(5000, table.RowCount);
        Assert.Equal(15000, table.X.Length);
        Assert.Equal(4999 % 3, table.RowX(4999)[0]);
        Assert.Equal(5001L, table.Lines[^1]);
    }

    [Fact]
    public void InMemoryTablesAreChecked()
    {
        var schema = new FeatureSchema([FittedFeature.Numeric("v", 0, 1), FittedFeature.Binary("b")]);
        Assert.Throws<ArgumentException>(() => new FeatureTable(schema, new float[3], new float[3]));
        Assert.Throws<ArgumentException>(() => new FeatureTable(schema, new float[4], [1, 1, 0.5f, 1]));
        var table = new FeatureTable(schema, [1, 0, 2, 1], [1, 1, 1, 1]);
        Assert.Equal([2L, 3], table.Lines);
    }

    [Fact]
    public void LoadHonoursCancellation()
    {
        var path = WriteCsv("temp,status,door\n" + string.Join("\n", Enumerable.Repeat("1,a,y", 10)) + "\n");
        var schema = FeatureSchema.Fit(s_spec, path);
        using var cancelled = new CancellationTokenSource();
        cancelled.Cancel();
        Assert.Throws<OperationCanceledException>(() => FeatureTable.Load(path, schema, cancellationToken: cancelled.Token));
    }
}
