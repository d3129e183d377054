using System.Globalization;
using AnomalyVae.Model;

namespace AnomalyVae.UnitTests.Model;

public class SpecInferenceTests
{
    /// <summary>Builds a sample where column c's value in row r is <c>columns[c](r)</c>.</summary>
    private static (string[] Header, string[][] Rows) Sample(int rows, params (string Name, Func<int, string> Value)[] columns) =>
        ([.. columns.Select(c => c.Name)],
         [.. Enumerable.Range(0, rows).Select(r => columns.Select(c => c.Value(r)).ToArray())]);

    private static ColumnDecision DecideOne(int rows, string name, Func<int, string> value)
    {
        var (header, data) = Sample(rows, (name, value));
        return Assert.Single(SpecInference.Decide(header, data));
    }

    private static string Inv(double v) => v.ToString("R", CultureInfo.InvariantCulture);

    [Fact]
    public void AnEntityKeyWithRepeatsAndATimestampAreSuggestedForAWindow()
    {
        var (header, rows) = Sample(200,
            ("event_id", r => $"e{r}"),
            ("machine_id", r => $"m{r % 20}"),
            ("ts", r => new DateTime(2024, 1, 1).AddMinutes(r).ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture)),
            ("temp", r => Inv(20 + r % 7)));
        Assert.Equal(("machine_id", "ts"), SpecInference.SuggestWindow(SpecInference.Decide(header, rows)));

        // Every id distinct and no time: nothing obvious to suggest.
        var (plainHeader, plainRows) = Sample(200, ("event_id", r => $"e{r}"), ("temp", r => Inv(20 + r % 7)));
        Assert.Equal((null, null), SpecInference.SuggestWindow(SpecInference.Decide(plainHeader, plainRows)));
    }

    [Fact]
    public void MixedSampleGetsTheExpectedSpecInColumnOrder()
    {
        var random = new Random(1);
        var (header, rows) = Sample(200,
            ("id", r => $"r{r}"),
            ("ts", r => new DateTime(2024, 1, 1).AddMinutes(r).ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture)),
            ("temp", _ => Inv(20 + random.NextDouble())),
            ("status", r => (r % 3) switch { 0 => "ok", 1 => "warn", _ => "err" }),
            ("door_open", r => r % 2 == 0 ? "yes" : "no"),
            ("zone", r => (r % 4).ToString(CultureInfo.InvariantCulture)),
            ("Label", r => r % 50 == 0 ? "1" : "0"),
            ("empty", r => r % 2 == 0 ? "" : "NA"));

        var spec = SpecInference.Infer(header, rows);

        Assert.Equal(
            [new FeatureDefinition("temp", FeatureKind.Numeric), new("status", FeatureKind.Categorical),
             new("door_open", FeatureKind.Binary), new("zone", FeatureKind.Categorical)],
            spec.Features);
        Assert.Equal(["id", "ts", "Label", "empty"], spec.Ignore);
        Assert.Equal(spec.ToJson(), SpecInference.Infer(header, rows).ToJson()); // deterministic
    }

    [Theory]
    [InlineData("label")]
    [InlineData("CLASS")]
    [InlineData("target")]
    [InlineData("is_anomaly")]
    [InlineData("Anomaly")]
    [InlineData("y")]
    [InlineData("outlier")]
    [InlineData("anomaly_kind")]
    public void LabelNamesAreIgnoredWhateverTheirValues(string name)
    {
        var decision = DecideOne(50, name, r => Inv(r * 1.5));
        Assert.Null(decision.Kind);
        Assert.Contains("label", decision.Reason);
    }

    [Theory]
    [InlineData("0", "1")]
    [InlineData("true", "false")]
    [InlineData("Yes", "no")]
    [InlineData("T", "f")]
    [InlineData("y", "N")]
    public void TwoOppositeStandardTokensAreBinary(string a, string b) =>
        Assert.Equal(FeatureKind.Binary, DecideOne(30, "flag", r => r % 3 == 0 ? a : b).Kind);

    [Fact]
    public void TwoTokensOfTheSameMeaningAreNotBinary()
    {
        // "1" and "true" both mean 1: a binary feature would be constant, so it is categorical codes instead.
        Assert.NotEqual(FeatureKind.Binary, DecideOne(30, "flag", r => r % 2 == 0 ? "1" : "true").Kind);
    }

    [Fact]
    public void IntegerCodesUpToTheLimitAreCategoricalBeyondItNumeric()
    {
        Assert.Equal(FeatureKind.Categorical, DecideOne(100, "code", r => (r % SpecInference.MaxIntegerCodes).ToString(CultureInfo.InvariantCulture)).Kind);
        Assert.Equal(FeatureKind.Numeric, DecideOne(100, "count", r => (r % (SpecInference.MaxIntegerCodes + 1)).ToString(CultureInfo.InvariantCulture)).Kind);
    }

    [Fact]
    public void FewDistinctFractionsStayNumeric() =>
        Assert.Equal(FeatureKind.Numeric, DecideOne(40, "rating", r => Inv((r % 4) + 0.5)).Kind);

    [Fact]
    public void NumbersUseInvariantCultureOnly()
    {
        // "1,5" is not a number in invariant culture, so the column is text.
        Assert.Equal(FeatureKind.Categorical, DecideOne(30, "v", r => r % 2 == 0 ? "1,5" : "2,5").Kind);
    }

    [Fact]
    public void IdColumnsAreIgnored()
    {
        Assert.Null(DecideOne(5, "user_id", r => (r * 7).ToString(CultureInfo.InvariantCulture)).Kind);
        Assert.Null(DecideOne(5, "ID", r => $"a{r}").Kind);

        // All-distinct text needs enough rows to be called id-like; an id-named column with repeats is kept.
        Assert.Null(DecideOne(SpecInference.MinRowsForDistinctId, "session", r => $"s-{r}").Kind);
        Assert.Equal(FeatureKind.Categorical, DecideOne(SpecInference.MinRowsForDistinctId - 1, "session", r => $"s-{r}").Kind);
        Assert.NotNull(DecideOne(30, "device_id", r => (r % 3).ToString(CultureInfo.InvariantCulture)).Kind);

        // All-distinct numbers are a measurement, not an id.
        Assert.Equal(FeatureKind.Numeric, DecideOne(30, "voltage", r => Inv(r + 0.25)).Kind);
    }

    [Fact]
    public void AnomalyKindTextIsIgnoredLikeALabel()
    {
        // Generated data sets carry the kind of each injected anomaly next to the label: "" or e.g. "spike".
        var decision = DecideOne(100, "anomaly_kind", r => r % 10 == 0 ? "spike" : r % 10 == 1 ? "drift" : "");
        Assert.Null(decision.Kind);
        Assert.Contains("label", decision.Reason);
    }

    [Fact]
    public void IdNamedColumnsWithManyDistinctValuesAreEntityKeys()
    {
        // machine_id repeats (many readings per machine), so it is not all-distinct, yet it is no feature.
        var many = DecideOne(500, "machine_id", r => $"m{r % (SpecInference.MaxIdCodes + 1):D3}");
        Assert.Null(many.Kind);
        Assert.Contains("entity key", many.Reason);

        // Up to the limit an id-named column is a small code set and stays categorical.
        Assert.Equal(FeatureKind.Categorical, DecideOne(500, "site_id", r => $"s{r % SpecInference.MaxIdCodes}").Kind);

        // The rule is about the name: the same values under another name are categorical.
        Assert.Equal(FeatureKind.Categorical, DecideOne(500, "machine", r => $"m{r % (SpecInference.MaxIdCodes + 1):D3}").Kind);
    }

    [Theory]
    [InlineData("2024-03-01")]
    [InlineData("2024-03-01T12:30:00Z")]
    [InlineData("2024-03-01 12:30:00")]
    [InlineData("2024-03-01T12:30:00.123+02:00")]
    public void IsoTimestampsAreIgnored(string first)
    {
        var decision = DecideOne(3, "when", r => r == 0 ? first : "2024-03-02T00:00:00Z");
        Assert.Null(decision.Kind);
        Assert.Contains("timestamp", decision.Reason);
    }

    [Fact]
    public void NonIsoDatesAreNotTimestamps() =>
        Assert.Equal(FeatureKind.Categorical, DecideOne(3, "when", r => r == 0 ? "03/01/2024" : "03/02/2024").Kind);

    [Fact]
    public void AllMissingColumnIsIgnored()
    {
        var decision = DecideOne(10, "gone", r => CellText.MissingTokens[r % CellText.MissingTokens.Count]);
        Assert.Null(decision.Kind);
        Assert.Contains("no value", decision.Reason);
    }

    [Fact]
    public void MissingValuesDoNotChangeTheKind() =>
        Assert.Equal(FeatureKind.Numeric, DecideOne(60, "v", r => r % 5 == 0 ? "NaN" : Inv(r * 1.1)).Kind);

    [Fact]
    public void LogIsSuggestedForSkewedNonNegativeColumnsOnly()
    {
        // Log-normal bytes, sigma 1.5: p99/median = e^(2.33·1.5) ≈ 33, sample skewness far above 2.
        var random = new Random(3);
        var bytes = Enumerable.Range(0, 500)
            .Select(_ => 1000 * Math.Exp(1.5 * Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble())))
            .ToArray();
        var skewed = DecideOne(500, "bytes", r => Inv(bytes[r]));
        Assert.Equal(FeatureKind.Numeric, skewed.Kind);
        Assert.True(skewed.Log, skewed.Reason);

        // Same shape with negative values: no log.
        Assert.False(DecideOne(500, "delta", r => Inv(bytes[r] - bytes.Min() - 1)).Log);

        // Symmetric: no log.
        Assert.False(DecideOne(500, "temp", r => Inv(20 + random.NextDouble())).Log);

        // Too few values to judge.
        Assert.False(DecideOne(SpecInference.MinRowsForLog - 1, "bytes", r => Inv(bytes[r])).Log);
    }

    [Fact]
    public void NoUsableColumnIsAClearError()
    {
        var (header, rows) = Sample(20, ("id", r => $"x{r}"), ("label", _ => "0"));
        var e = Assert.Throws<FeatureSpecException>(() => SpecInference.Infer(header, rows));
        Assert.Contains("no column looks like a feature", e.Message);
        Assert.Contains("column 'label'", e.Message);
    }

    [Fact]
    public void ReadSampleTakesTheFirstRows()
    {
        var path = Path.GetTempFileName();
        try
        {
            File.WriteAllLines(path, ["a,b", .. Enumerable.Range(0, 50).Select(i => $"{i},x{i % 3}")]);
            var (header, rows) = SpecInference.ReadSample(path, maxRows: 10);
            Assert.Equal(["a", "b"], header);
            Assert.Equal(10, rows.Count);
            Assert.Equal("9", rows[9][0]);
        }
        finally
        {
            File.Delete(path);
        }
    }
}
