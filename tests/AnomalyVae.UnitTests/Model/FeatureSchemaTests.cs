using System.Globalization;
using AnomalyVae.Model;

namespace AnomalyVae.UnitTests.Model;

public class FeatureSchemaTests
{
    private static readonly string[] s_header = ["id", "temp", "bytes", "status", "door"];

    private static FeatureSpec Spec(bool logBytes = true) => new(
        [new("temp", FeatureKind.Numeric), new("bytes", FeatureKind.Numeric, logBytes), new("status", FeatureKind.Categorical), new("door", FeatureKind.Binary)],
        ["id"]);

    private static FeatureSchema Fit(FeatureSpec spec, params string[][] rows) => FeatureSchema.Fit(spec, s_header, rows);

    [Fact]
    public void NumericCenterIsMedianAndScaleIsIqrOver1349()
    {
        // temp = 1, 2, 3, 4, 100: median 3; type-7 quartiles 2 and 4 → IQR 2 → scale 2/1.349.
        var schema = Fit(Spec(),
            ["a", "1", "0", "x", "0"], ["b", "2", "0", "x", "0"], ["c", "3", "0", "x", "0"], ["d", "4", "0", "x", "0"], ["e", "100", "0", "x", "0"]);
        var temp = schema.Features[0];
        Assert.Equal(3, temp.Center);
        Assert.Equal(2 / 1.349, temp.Scale, 12);
        // Then the tail squash fitted on the same values (|z| q95 is the outlier's shoulder, so k is large here).
        Assert.Equal(FeatureSchema.FitTailScale([1, 2, 3, 4, 100], 3, 2 / 1.349), temp.TailScale);
        double z = (100 - 3) / (2 / 1.349);
        Assert.Equal((float)(temp.TailScale * Math.Asinh(z / temp.TailScale)), temp.Standardize(100));
    }

    [Fact]
    public void CenterAndScaleMatchSortBasedQuantilesOnAnyOrder()
    {
        // Fitting selects order statistics without sorting; compare with a plain sort on shapes that stress
        // selection: random with many ties, ascending, descending, organ pipe, one outlier among constants.
        var random = new Random(9);
        var spec = new FeatureSpec([new("v", FeatureKind.Numeric)]);
        IEnumerable<double[]> Cases()
        {
            foreach (var n in new[] { 1, 2, 3, 4, 5, 10, 101, 1000, 4096 })
            {
                yield return [.. Enumerable.Range(0, n).Select(_ => (double)random.Next(0, 7))];
                yield return [.. Enumerable.Range(0, n).Select(_ => random.NextDouble())];
                yield return [.. Enumerable.Range(0, n).Select(i => (double)i)];
                yield return [.. Enumerable.Range(0, n).Select(i => (double)-i)];
                yield return [.. Enumerable.Range(0, n).Select(i => (double)Math.Min(i, n - i))];
                yield return [.. Enumerable.Range(0, n).Select(i => i == n / 2 ? 1e6 : 3.0)];
            }
        }

        foreach (var values in Cases())
        {
            var schema = FeatureSchema.Fit(spec, ["v"], values.Select(v => new[] { ((float)v).ToString("R", CultureInfo.InvariantCulture) }));
            var sorted = values.Select(v => (double)(float)v).Order().ToArray();
            double Q(double p)
            {
                var h = (sorted.Length - 1) * p;
                var lo = (int)Math.Floor(h);
                return sorted[lo] + ((h - lo) * (sorted[Math.Min(lo + 1, sorted.Length - 1)] - sorted[lo]));
            }

            var iqrScale = (Q(0.75) - Q(0.25)) / 1.349;
            var mean = sorted.Average();
            var std = Math.Sqrt(sorted.Sum(v => (v - mean) * (v - mean)) / sorted.Length);
            var expectedScale = iqrScale > 0 ? iqrScale : std > 0 ? std : 1;
            Assert.Equal(Q(0.5), schema.Features[0].Center, 9);
            Assert.Equal(expectedScale, schema.Features[0].Scale, 9);
        }
    }

    [Fact]
    public void LogTransformIsAppliedBeforeFitting()
    {
        // bytes = 0, e-1, e²-1 → t = 0, 1, 2 (log1p): median 1; quartiles 0.5, 1.5 → scale 1/1.349.
        var schema = Fit(Spec(),
            ["a", "1", "0", "x", "0"], ["b", "1", (Math.E - 1).ToString("R", CultureInfo.InvariantCulture), "x", "0"], ["c", "1", (Math.E * Math.E - 1).ToString("R", CultureInfo.InvariantCulture), "x", "0"]);
        var bytes = schema.Features[1];
        Assert.True(bytes.Log);
        Assert.Equal(1, bytes.Center, 6);
        Assert.Equal(1 / 1.349, bytes.Scale, 6);
        Assert.Equal(-Math.Log(1 + 5), bytes.Transform(-5), 12); // sign(x)·log(1+|x|)
    }

    [Fact]
    public void ScaleFallsBackToStdThenToOne()
    {
        // temp: 8 × 5 and 2 × 15 → IQR 0, population std of {5×8, 15×2} = 4 → scale 4. bytes: constant → scale 1.
        var rows = Enumerable.Range(0, 10)
            .Select(i => new[] { $"r{i}", i < 8 ? "5" : "15", "7", "x", "0" })
            .ToArray();
        var schema = Fit(Spec(logBytes: false), rows);
        Assert.Equal(5, schema.Features[0].Center);
        Assert.Equal(4, schema.Features[0].Scale, 12);
        Assert.Equal(7, schema.Features[1].Center);
        Assert.Equal(1, schema.Features[1].Scale);
        Assert.Equal(0, schema.Features[1].Standardize(7));
        Assert.True(float.IsFinite(schema.Features[1].Standardize(1e30f)));
    }

    [Fact]
    public void AllMissingNumericGetsIdentityParameters()
    {
        var schema = Fit(Spec(), ["a", "", "NA", "x", "1"], ["b", "null", "N/A", "y", "0"]);
        Assert.Equal((0.0, 1.0), (schema.Features[0].Center, schema.Features[0].Scale));
        Assert.Equal((0.0, 1.0), (schema.Features[1].Center, schema.Features[1].Scale));
    }

    [Fact]
    public void StandardizedValuesAreClamped()
    {
        var feature = FittedFeature.Numeric("v", center: 0, scale: 1e-3);
        Assert.Equal((float)FeatureSchema.StandardizedLimit, feature.Standardize(1e6f));
        Assert.Equal((float)-FeatureSchema.StandardizedLimit, feature.Standardize(float.MinValue));
    }

    [Fact]
    public void TailScaleIsThreeTimesTheTrainingQuantileOfAbsoluteZAndSquashesOnlyTheTail()
    {
        // |z| = 0..99 (center 0, scale 1): q95 = 94.05, so k = 3·94.05; a light-tailed column gets the floor.
        double[] heavy = [.. Enumerable.Range(0, 100).Select(i => (double)i)];
        Assert.Equal(3 * 94.05, FeatureSchema.FitTailScale(heavy, 0, 1), 9);
        Assert.Equal(FeatureSchema.TailScaleFloor, FeatureSchema.FitTailScale([0.1, -0.2, 0.3], 0, 1));

        var feature = FittedFeature.Numeric("v", center: 0, scale: 1, tailScale: 3);
        Assert.Equal(0.5f, feature.Standardize(0.5f), 2); // near-linear well inside k
        Assert.Equal((float)(3 * Math.Asinh(100.0 / 3)), feature.Standardize(100f)); // logarithmic far out
        Assert.Equal(-feature.Standardize(7f), feature.Standardize(-7f));
    }

    [Fact]
    public void TailScaleRoundTripsThroughJsonAndOlderSchemasReadWithoutIt()
    {
        var schema = new FeatureSchema([FittedFeature.Numeric("v", 1, 2, tailScale: 4.5), FittedFeature.Numeric("w", 0, 1)]);
        var back = FeatureSchema.FromJson(schema.ToJson());
        Assert.Equal(4.5, back.Features[0].TailScale);
        Assert.Equal(0, back.Features[1].TailScale);
        Assert.DoesNotContain("tailScale", new FeatureSchema([FittedFeature.Numeric("w", 0, 1)]).ToJson());
        Assert.Throws<FeatureSpecException>(() => FittedFeature.Numeric("v", 0, 1, tailScale: -1));
    }

    [Fact]
    public void VocabularyIsUnknownThenByFrequencyThenOrdinal()
    {
        string[] statuses = ["b", "a", "c", "a", "b", "d", "a", " c ", "NA", "<unknown>"];
        var schema = Fit(Spec(), [.. statuses.Select(s => new[] { "r", "1", "1", s, "0" })]);
        var status = schema.Features[2];
        // a:3, b:2, c:2 (trimmed " c " counts as c), d:1; ties b/c in ordinal order; "NA" is missing;
        // a literal "<unknown>" is not a vocabulary entry (it lands in bucket 0).
        Assert.Equal(["<unknown>", "a", "b", "c", "d"], status.Vocabulary);
        Assert.Equal(5, status.Cardinality);
        Assert.Equal(5, status.EncodedWidth);
        Assert.Equal(1, status.CategoryIndex("a"));
        Assert.Equal(3, status.CategoryIndex("  c"));
        Assert.Equal(0, status.CategoryIndex("never seen"));
        Assert.Equal(0, status.CategoryIndex("A")); // case-sensitive
    }

    [Fact]
    public void VocabularyIsCappedAtMaxCategories()
    {
        // Values v0..v1099; v0..v9 appear twice so they must survive the cap; the rest tie and go in ordinal order.
        var values = Enumerable.Range(0, 1100).Select(i => $"v{i}").Concat(Enumerable.Range(0, 10).Select(i => $"v{i}"));
        var schema = Fit(Spec(), [.. values.Select(v => new[] { "r", "1", "1", v, "0" })]);
        var vocabulary = schema.Features[2].Vocabulary;
        Assert.Equal(FeatureSchema.MaxCategories + 1, vocabulary.Count);
        Assert.Equal(["<unknown>", "v0", "v1", "v2"], vocabulary.Take(4));
        var dropped = Enumerable.Range(0, 1100).Select(i => $"v{i}").Except(vocabulary).ToList();
        Assert.Equal(100, dropped.Count);
        Assert.All(dropped, v => Assert.Equal(0, schema.Features[2].CategoryIndex(v)));
    }

    [Fact]
    public void StandardBinaryTokensMapCaseInsensitively()
    {
        var schema = Fit(Spec(), ["a", "1", "1", "x", "Yes"], ["b", "1", "1", "x", "no"], ["c", "1", "1", "x", "TRUE"]);
        var door = schema.Features[3];
        Assert.Equal(CellText.StandardTrueTokens, door.TrueTokens);
        Assert.Equal(1, door.Bit("y"));
        Assert.Equal(0, door.Bit(" F "));
        Assert.Equal(-1, door.Bit("maybe"));
    }

    [Fact]
    public void CustomBinaryTokensMapInOrdinalOrderOrOppositeAStandardOne()
    {
        var custom = Fit(Spec(), ["a", "1", "1", "x", "open"], ["b", "1", "1", "x", "closed"]).Features[3];
        Assert.Equal(["closed"], custom.FalseTokens);
        Assert.Equal(["open"], custom.TrueTokens);

        var mixed = Fit(Spec(), ["a", "1", "1", "x", "alarm"], ["b", "1", "1", "x", "0"]).Features[3];
        Assert.Equal(["0"], mixed.FalseTokens);
        Assert.Equal(["alarm"], mixed.TrueTokens);
    }

    [Fact]
    public void BinaryWithThreeValuesIsAClearError()
    {
        var e = Assert.Throws<FeatureSpecException>(() =>
            Fit(Spec(), ["a", "1", "1", "x", "red"], ["b", "1", "1", "x", "green"], ["c", "1", "1", "x", "blue"]));
        Assert.Contains("binary column 'door'", e.Message);
        Assert.Contains("3 distinct values", e.Message);
        Assert.Contains("categorical", e.Message);
    }

    [Fact]
    public void NonNumericCellNamesLineAndColumn()
    {
        var e = Assert.Throws<CsvFormatException>(() => Fit(Spec(), ["a", "1", "1", "x", "0"], ["b", "1", "12kB", "x", "0"]));
        Assert.Equal(3, e.Line);
        Assert.Equal("bytes", e.Column);
        Assert.Contains("'12kB' is not a number", e.Message);
    }

    [Fact]
    public void NonFiniteNumbersAreMissingWhenFittingAndEncoding()
    {
        var schema = Fit(Spec(logBytes: false),
            ["a", "1", "Infinity", "x", "0"], ["b", "2", "-inf", "x", "0"], ["c", "3", "NaN", "x", "0"], ["d", "4", "10", "x", "0"]);
        Assert.Equal(10, schema.Features[1].Center); // only the finite value counts

        Assert.True(schema.TryEncode(1, "Infinity", out var x, out var mask));
        Assert.Equal((0f, 0f), (x, mask));
        Assert.True(schema.TryEncode(1, double.NegativeInfinity, out x, out mask));
        Assert.Equal((0f, 0f), (x, mask));
    }

    [Theory]
    [InlineData("")]
    [InlineData("  ")]
    [InlineData("NA")]
    [InlineData("N/A")]
    [InlineData("NaN")]
    [InlineData("nan")]
    [InlineData("null")]
    [InlineData("NULL")]
    [InlineData("None")]
    public void MissingTokensEncodeAsMaskZeroForEveryKind(string token)
    {
        var schema = Fit(Spec(), ["a", "1", "1", "x", "0"]);
        for (var f = 0; f < schema.Count; f++)
        {
            Assert.True(schema.TryEncode(f, token, out var x, out var mask));
            Assert.Equal((0f, 0f), (x, mask));
        }
    }

    [Fact]
    public void EncodesTextCellsPerTheContract()
    {
        var schema = Fit(Spec(), ["a", "1", "1", "ok", "0"], ["b", "2", "2", "err", "1"], ["c", "3", "3", "ok", "1"]);
        Assert.True(schema.TryEncode(0, " 21.5 ", out var x, out var mask));
        Assert.Equal((21.5f, 1f), (x, mask));
        Assert.True(schema.TryEncode(1, "1e3", out x, out mask)); // raw value, not log-transformed
        Assert.Equal((1000f, 1f), (x, mask));
        Assert.True(schema.TryEncode(2, "err", out x, out mask));
        Assert.Equal((2f, 1f), (x, mask));
        Assert.True(schema.TryEncode(2, "brand new", out x, out mask)); // unseen → present, unknown bucket
        Assert.Equal((0f, 1f), (x, mask));
        Assert.True(schema.TryEncode(3, "true", out x, out mask));
        Assert.Equal((1f, 1f), (x, mask));
        Assert.False(schema.TryEncode(0, "abc", out _, out _));
        Assert.False(schema.TryEncode(3, "maybe", out _, out _));
        Assert.True(schema.TryEncode(0, "1e300", out x, out mask)); // beyond float range: clamped, not infinite
        Assert.Equal((float.MaxValue, 1f), (x, mask));
    }

    [Fact]
    public void EncodesNumbersAndBooleansFromEvents()
    {
        var schema = new FeatureSchema([FittedFeature.Numeric("v", 0, 1), FittedFeature.Categorical("code", ["3", "7", "true"]), FittedFeature.Binary("b")]);
        Assert.True(schema.TryEncode(0, 2.5, out var x, out var mask));
        Assert.Equal((2.5f, 1f), (x, mask));
        Assert.True(schema.TryEncode(1, 7.0, out x, out mask)); // 7.0 is looked up as "7"
        Assert.Equal((2f, 1f), (x, mask));
        Assert.True(schema.TryEncode(1, 7.5, out x, out mask));
        Assert.Equal((0f, 1f), (x, mask));
        Assert.True(schema.TryEncode(1, true, out x, out mask));
        Assert.Equal((3f, 1f), (x, mask));
        Assert.True(schema.TryEncode(2, 1.0, out x, out mask));
        Assert.Equal((1f, 1f), (x, mask));
        Assert.False(schema.TryEncode(2, 0.5, out _, out _));
        Assert.True(schema.TryEncode(2, false, out x, out mask));
        Assert.Equal((0f, 1f), (x, mask));
        Assert.True(schema.TryEncode(0, true, out x, out mask));
        Assert.Equal((1f, 1f), (x, mask));
        Assert.True(schema.TryEncode(2, double.NaN, out x, out mask));
        Assert.Equal((0f, 0f), (x, mask));
    }

    [Fact]
    public void LookupsBySpanFindFeaturesAndCategories()
    {
        var schema = new FeatureSchema([FittedFeature.Numeric("temp", 0, 1), FittedFeature.Categorical("status", ["ok", "err"])]);
        var json = "{\"status\":\"err\",\"temp\":1}".AsSpan();
        Assert.True(schema.TryGetIndex(json.Slice(2, 6), out var index));
        Assert.Equal(1, index);
        Assert.Equal(2, schema.Features[index].CategoryIndex(json.Slice(11, 3)));
        Assert.False(schema.TryGetIndex("Temp", out _));
        Assert.Equal(0, schema.IndexOf("temp"));
        Assert.Equal(-1, schema.IndexOf("nope"));
    }

    [Fact]
    public void HotPathEncodingDoesNotAllocate()
    {
        var schema = new FeatureSchema([FittedFeature.Numeric("temp", 0, 1), FittedFeature.Categorical("status", ["ok", "err"]), FittedFeature.Binary("b")]);
        var text = "temp,status,b,12.5,err,yes".ToCharArray();
        float sum = 0;
        void Encode()
        {
            var span = text.AsSpan();
            schema.TryGetIndex(span[..4], out var t);
            schema.TryGetIndex(span[5..11], out var s);
            schema.TryGetIndex(span[12..13], out var b);
            schema.TryEncode(t, span[14..18], out var x0, out _);
            schema.TryEncode(s, span[19..22], out var x1, out _);
            schema.TryEncode(b, span[23..], out var x2, out _);
            schema.TryEncode(t, 3.25, out var x3, out _);
            schema.TryEncode(s, 7.0, out var x4, out _);
            sum += x0 + x1 + x2 + x3 + x4;
        }

        Encode(); // warm up (JIT, static initialisation)
        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 1000; i++)
            Encode();
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(0, allocated);
        Assert.Equal(1001 * (12.5f + 2 + 1 + 3.25f + 0), sum);
    }

    [Fact]
    public void StandardizeProducesTrainingInput()
    {
        var schema = new FeatureSchema([FittedFeature.Numeric("v", center: 10, scale: 2), FittedFeature.Categorical("c", ["a", "b"]), FittedFeature.Binary("b")]);
        float[] x = [14, 2, 1, /**/ 0, 0, 0];
        float[] mask = [1, 1, 1, /**/ 0, 0, 0];
        var values = new float[6];
        schema.Standardize(x, mask, values);
        Assert.Equal([2f, 2f, 1f, 0f, 0f, 0f], values);
        Assert.Throws<ArgumentException>(() => schema.Standardize(x, mask, new float[5]));
    }

    [Fact]
    public void JsonRoundTripPreservesEveryParameterExactly()
    {
        var random = new Random(5);
        var rows = Enumerable.Range(0, 300).Select(i => new[]
        {
            $"r{i}", (random.NextDouble() * 100).ToString("R", CultureInfo.InvariantCulture), Math.Exp(random.NextDouble() * 8).ToString("R", CultureInfo.InvariantCulture),
            (i % 7 == 0 ? "rare, with \"quotes\"" : i % 2 == 0 ? "ok" : "é漢"), (i % 3 == 0 ? "Y" : "n"),
        }).ToArray();
        var schema = Fit(Spec(), rows);
        var json = schema.ToJson();
        var back = FeatureSchema.FromJson(json);

        Assert.Equal(json, back.ToJson());
        for (var f = 0; f < schema.Count; f++)
        {
            var (a, b) = (schema.Features[f], back.Features[f]);
            Assert.Equal((a.Name, a.Kind, a.Log, a.Center, a.Scale), (b.Name, b.Kind, b.Log, b.Center, b.Scale));
            Assert.Equal(a.Vocabulary, b.Vocabulary);
            Assert.Equal(a.FalseTokens, b.FalseTokens);
            Assert.Equal(a.TrueTokens, b.TrueTokens);
        }

        Assert.Contains("\"kind\":\"categorical\"", json);
        Assert.Equal(schema.EncoderInputWidth, back.EncoderInputWidth);
        Assert.Equal(1 + 1 + 4 + 1 + 4, schema.EncoderInputWidth); // K("<unknown>", ok, é漢, rare) = 4, plus F = 4 masks
    }

    [Theory]
    [InlineData("""{"version":2,"features":[{"name":"v","kind":"numeric","center":0,"scale":1}]}""", "version 2")]
    [InlineData("""{"version":1,"features":[]}""", "at least one feature")]
    [InlineData("""{"version":1,"features":[{"name":"v","kind":"numeric","center":0,"scale":0}]}""", "scale must be finite and positive")]
    [InlineData("""{"version":1,"features":[{"name":"v","kind":"numeric","center":0}]}""", "scale must be finite and positive")]
    [InlineData("""{"version":1,"features":[{"name":"c","kind":"categorical","vocabulary":["a"]}]}""", "must start with the reserved")]
    [InlineData("""{"version":1,"features":[{"name":"c","kind":"categorical","vocabulary":["<unknown>","a","a"]}]}""", "repeated")]
    [InlineData("""{"version":1,"features":[{"name":"b","kind":"binary","falseTokens":["x"],"trueTokens":["X"]}]}""", "listed twice")]
    [InlineData("""{"version":1,"features":[{"name":"v","kind":"text"}]}""", "malformed")]
    [InlineData("""{"version":1,"features":[{"name":"v"}]}""", "without \"kind\"")]
    [InlineData("""{"version":1,"features":[{"name":"v","kind":"numeric","center":0,"scale":1},{"name":"v","kind":"binary","falseTokens":["0"],"trueTokens":["1"]}]}""", "duplicate")]
    [InlineData("not json", "malformed")]
    public void FromJsonRejectsInvalidSchemas(string json, string expected)
    {
        var e = Assert.Throws<FeatureSpecException>(() => FeatureSchema.FromJson(json));
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void SpecColumnMissingFromCsvIsNamed()
    {
        var e = Assert.Throws<FeatureSpecException>(() => FeatureSchema.Fit(Spec(), ["id", "temp"], []));
        Assert.Contains("'bytes' is not in the CSV header", e.Message);
    }
}
