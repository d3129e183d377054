using System.Globalization;
using AnomalyVae.Model;
using AnomalyVae.Tools;

namespace AnomalyVae.UnitTests.Tools;

/// <summary><c>bench suite --screen-rank-gauss</c>: ranks fitted on the training rows only, mapped through Φ⁻¹.</summary>
public sealed class RankGaussScreenTests
{
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

    [Fact]
    public void BlendMixesInTheProductsSquashedRobustZ()
    {
        var spec = new FeatureSpec([new FeatureDefinition("a", FeatureKind.Numeric)]);
        IReadOnlyList<string>[] records = [["10"], ["20"], ["30"], ["40"], ["1000"]];
        double[] training = [10, 20, 30, 40];
        var (center, scale) = FeatureSchema.RobustLocationScale(training);
        double k = FeatureSchema.FitTailScale(training, center, scale);
        double Squashed(double x) => k * Math.Asinh((x - center) / scale / k);

        var (_, pure, pathPure) = RankGaussScreen.Apply(spec, ["a"], records, [0, 1, 2, 3]);
        var (_, half, pathHalf) = RankGaussScreen.Apply(spec, ["a"], records, [0, 1, 2, 3], blend: 0.5);
        var (_, full, pathFull) = RankGaussScreen.Apply(spec, ["a"], records, [0, 1, 2, 3], blend: 1);
        File.Delete(pathPure);
        File.Delete(pathHalf);
        File.Delete(pathFull);
        double V(IReadOnlyList<string>[] t, int row) => double.Parse(t[row][0], CultureInfo.InvariantCulture);
        for (int row = 0; row < records.Length; row++)
        {
            double x = double.Parse(records[row][0], CultureInfo.InvariantCulture);
            Assert.Equal(Squashed(x), V(full, row), 1e-12);
            Assert.Equal((0.5 * Squashed(x)) + (0.5 * V(pure, row)), V(half, row), 1e-12);
        }
        Assert.True(V(full, 4) > V(full, 3) + 3, "a value far beyond the training range stays far with the robust z");
        Assert.Throws<ArgumentOutOfRangeException>(() => RankGaussScreen.Apply(spec, ["a"], records, [0, 1], blend: 1.5));
    }
}
