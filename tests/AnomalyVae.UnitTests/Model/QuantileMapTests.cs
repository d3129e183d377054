using AnomalyVae.Model;

namespace AnomalyVae.UnitTests.Model;

/// <summary>The opt-in rank-Gauss map of numeric columns (<c>train --quantile-map</c>).</summary>
public sealed class QuantileMapTests
{
    [Theory]
    [InlineData(0.5, 0.0)]
    [InlineData(0.975, 1.959963985)]
    [InlineData(0.01, -2.326347874)]
    [InlineData(0.875, 1.150349380)]
    [InlineData(1e-4, -3.719016485)]
    public void NormalQuantileMatchesTheTable(double p, double expected) =>
        Assert.Equal(expected, QuantileMap.NormalQuantile(p), 5e-5);

    [Fact]
    public void KnotsAreTheDistinctValuesAtTheirMidRanks()
    {
        // n = 5: 0 (three times) has mid-rank 1.5 → p = 2/6; 1 → p = 4/6; 2 → p = 5/6.
        var map = QuantileMap.Fit([0, 2, 0, 1, 0])!;
        Assert.Equal([0.0, 1.0, 2.0], map.Knots);
        Assert.Equal(QuantileMap.NormalQuantile(2.0 / 6), map.Gaussian[0], 12);
        Assert.Equal(QuantileMap.NormalQuantile(4.0 / 6), map.Gaussian[1], 12);
        Assert.Equal(QuantileMap.NormalQuantile(5.0 / 6), map.Gaussian[2], 12);
        // Linear between knots, flat beyond them; the slope follows.
        Assert.Equal((map.Gaussian[0] + map.Gaussian[1]) / 2, map.Apply(0.5), 12);
        Assert.Equal(map.Gaussian[0], map.Apply(-100));
        Assert.Equal(map.Gaussian[2], map.Apply(1e9));
        Assert.Equal(map.Gaussian[1] - map.Gaussian[0], map.Slope(0.25), 12);
        Assert.Equal(0, map.Slope(-1));
        Assert.Equal(0, map.Slope(3));
        Assert.Null(QuantileMap.Fit([4, 4, 4]));
    }

    [Fact]
    public void ManyDistinctValuesGetEvenlySpacedKnotsFromMinimumToMaximum()
    {
        var random = new Random(3);
        double[] t = [.. Enumerable.Range(0, 5000).Select(_ => Math.Exp(random.NextDouble() * 4))];
        var map = QuantileMap.Fit(t)!;
        Assert.Equal(QuantileMap.MaxKnots, map.Knots.Count);
        Assert.Equal(t.Min(), map.Knots[0]);
        Assert.Equal(t.Max(), map.Knots[^1]);
        // A skewed column comes out Gaussian-shaped: its median maps near 0, its quartiles near ±0.674.
        var sorted = t.Order().ToArray();
        Assert.Equal(0, map.Apply(sorted[2500]), 0.02);
        Assert.Equal(-0.674, map.Apply(sorted[1250]), 0.02);
        Assert.Equal(0.674, map.Apply(sorted[3750]), 0.02);
    }

    [Theory]
    [InlineData(new double[] { 1 }, new double[] { 0 }, 0.5, "knots")]
    [InlineData(new double[] { 1, 1 }, new double[] { 0, 1 }, 0.5, "increase")]
    [InlineData(new double[] { 1, 2 }, new double[] { 1, 0 }, 0.5, "increase")]
    [InlineData(new double[] { 1, 2 }, new double[] { 0, 1 }, 0.0, "blend")]
    [InlineData(new double[] { 1, 2 }, new double[] { 0 }, 0.5, "Gaussian values")]
    public void MalformedMapsAreRefused(double[] knots, double[] gaussian, double blend, string reason) =>
        Assert.Contains(reason, Assert.Throws<ArgumentException>(() => new QuantileMap(knots, gaussian, blend)).Message);

    [Fact]
    public void FittedColumnsStandardizeInvertAndReportTheirSlope()
    {
        var random = new Random(11);
        // A point mass at zero plus a log-normal body: the kind of column the map is for.
        string[][] rows = [.. Enumerable.Range(0, 400).Select(i => new[] { (i % 3 == 0 ? 0 : Math.Exp(random.NextDouble() * 3)).ToString("R", System.Globalization.CultureInfo.InvariantCulture) })];
        var spec = new FeatureSpec([new FeatureDefinition("v", FeatureKind.Numeric, Log: true, QuantileMap: true)]);
        var feature = FeatureSchema.Fit(spec, ["v"], rows).Features[0];
        Assert.NotNull(feature.QuantileMap);
        // The blend is standardized again on the training rows: robust center 0, scale 1.
        double[] standardized = [.. rows.Select(r => (double)feature.Standardize(float.Parse(r[0], System.Globalization.CultureInfo.InvariantCulture)))];
        var (center, scale) = FeatureSchema.RobustLocationScale(standardized);
        Assert.Equal(0, center, 1e-5);
        Assert.Equal(1, scale, 1e-5);
        foreach (float x in new[] { 0f, 0.3f, 1f, 2.5f, 7f, 19.9f, 500f, -3f })
            Assert.Equal(x, feature.Unstandardize(feature.Standardize(x)), Math.Max(1e-4, 1e-5 * Math.Abs(x)));
        // Away from the knots (0, the point mass, is one: the map has a kink there) the slope is the derivative.
        foreach (float x in new[] { 0.3f, 1.1f, 2.5f, 7f, 500f, -3f })
        {
            Assert.DoesNotContain(feature.QuantileMap!.Knots, k => Math.Abs(feature.Transform(x) - k) < 1e-3);
            double h = 1e-4 * Math.Max(1, Math.Abs(x));
            // The slope is d(standardized)/dt with t = sign(x)·log(1 + |x|).
            double t0 = feature.Transform(x - h), t1 = feature.Transform(x + h);
            double numeric = (feature.Standardize((float)(x + h)) - feature.Standardize((float)(x - h))) / (t1 - t0);
            Assert.Equal(numeric, Math.Exp(feature.LogSlope(x)), 0.05 * numeric + 1e-3);
        }
    }

    [Fact]
    public void SchemaAndSpecJsonCarryTheMapAndRefuseItWhereItDoesNotApply()
    {
        var spec = FeatureSpec.Parse("""{"features":[{"name":"v","kind":"numeric","quantileMap":true},{"name":"c","kind":"categorical"}]}""");
        Assert.True(spec.Features[0].QuantileMap);
        Assert.Contains("\"quantileMap\": true", spec.ToJson());
        Assert.Equal(spec.ToJson(), FeatureSpec.Parse(spec.ToJson()).ToJson());
        Assert.Contains("\"quantileMap\" applies only to numeric features",
            Assert.Throws<FeatureSpecException>(() => FeatureSpec.Parse("""{"features":[{"name":"c","kind":"categorical","quantileMap":true}]}""")).Message);

        var schema = FeatureSchema.Fit(spec, ["v", "c"], [.. Enumerable.Range(0, 50).Select(i => new[] { (i * i % 17).ToString(System.Globalization.CultureInfo.InvariantCulture), i % 2 == 0 ? "a" : "b" })]);
        var back = FeatureSchema.FromJson(schema.ToJson());
        Assert.Equal(schema.ToJson(), back.ToJson());
        Assert.Equal(schema.Features[0].QuantileMap!.Knots, back.Features[0].QuantileMap!.Knots);
        Assert.Equal(schema.Features[0].Standardize(5.5f), back.Features[0].Standardize(5.5f));
        Assert.Null(back.Features[1].QuantileMap);
        // A schema without the map (every model before it) reads back without one.
        Assert.Null(FeatureSchema.Fit(new FeatureSpec([new FeatureDefinition("v", FeatureKind.Numeric)]), ["v"], [["1"], ["2"], ["3"]]).Features[0].QuantileMap);

        string broken = schema.ToJson().Replace("\"quantileBlend\":0.5", "\"quantileBlend\":2", StringComparison.Ordinal);
        Assert.NotEqual(schema.ToJson(), broken);
        Assert.Contains("feature 'v'", Assert.Throws<FeatureSpecException>(() => FeatureSchema.FromJson(broken)).Message);
    }
}
