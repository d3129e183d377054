using System.Globalization;
using AnomalyVae.Model;
using AnomalyVae.Tools;

namespace AnomalyVae.UnitTests.Tools;

/// <summary><c>bench suite --screen-rank-gauss</c>: ranks fitted on the training rows only, mapped through Φ⁻¹.</summary>
public sealed class RankGaussScreenTests
{
    [Theory]
    [InlineData(0.5, 0.0)]
    [InlineData(0.975, 1.959963985)]
    [InlineData(0.01, -2.326347874)]
    [InlineData(0.875, 1.150349380)]
    [InlineData(1e-4, -3.719016485)]
    public void NormalQuantileMatchesTheTable(double p, double expected) =>
        Assert.Equal(expected, RankGaussScreen.NormalQuantile(p), 5e-5);

    [Fact]
    public void NumericColumnsBecomeNormalQuantilesOfTrainingRanks()
    {
        var spec = new FeatureSpec([new FeatureDefinition("a", FeatureKind.Numeric, Log: true), new FeatureDefinition("b", FeatureKind.Categorical)], ["label"]);
        string[] header = ["a", "b", "label"];
        IReadOnlyList<string>[] records =
        [
            ["10", "x", "0"], ["20", "y", "0"], ["30", "x", "0"], // training rows
            ["20", "y", "0"], ["1000", "x", "1"], ["", "y", "1"],  // test rows: a tie, a value beyond the training range, a missing cell
        ];

        var (newSpec, transformed, path) = RankGaussScreen.Apply(spec, header, records, [0, 1, 2]);
        try
        {
            double A(int row) => double.Parse(transformed[row][0], CultureInfo.InvariantCulture);
            // Mid-rank r among n = 3 training values, p = (r + 0.5) / (n + 1): 10 → 0.25, 20 → 0.5, beyond 30 → 0.875.
            Assert.Equal(-0.674489750, A(0), 1e-7);
            Assert.Equal(0.0, A(1), 1e-9);
            Assert.Equal(A(1), A(3));
            Assert.Equal(1.150349380, A(4), 1e-7);
            Assert.Equal("", transformed[5][0]);
            Assert.Equal(["x", "y", "x", "y", "x", "y"], transformed.Select(r => r[1]));
            Assert.Equal("10", records[0][0]); // the input is left as it was
            Assert.False(newSpec.Features.Single(f => f.Name == "a").Log);
            var lines = File.ReadAllLines(path);
            Assert.Equal("a,b,label", lines[0]);
            Assert.Equal(7, lines.Length);
            Assert.Equal(string.Join(',', transformed[4]), lines[5]);
        }
        finally
        {
            File.Delete(path);
        }
    }
}
