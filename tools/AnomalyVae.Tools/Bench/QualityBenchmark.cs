using System.Diagnostics;
using System.Globalization;
using AnomalyVae.Cli;
using AnomalyVae.Model;
using AnomalyVae.Training.Engine;
using AnomalyVae.Training.Export;

namespace AnomalyVae.Tools;

/// <summary>
/// The engine-level quality harness behind the defaults' experiment table (training/AnomalyVae.Training/Engine/README.md):
/// AUROC in the semi-supervised protocol (train on normal rows only) on cardio (train on a random half of the normal
/// rows, test on the other half plus all anomalies; one split per seed) and on three synthetic tables whose anomalies
/// break dependencies between features, not marginals. Runs the C# engine directly (no ONNX) so that a whole table
/// of settings takes minutes on one core.
/// </summary>
internal static class QualityBenchmark
{
    /// <summary>A synthetic table: its columns and how many of them are numeric, binary, categorical.</summary>
    private sealed record SyntheticSet(string Name, int Numeric, int Binary, int Categorical, double Noise);

    private static readonly SyntheticSet[] SyntheticSets =
    [
        new("synthetic 6", 6, 0, 0, 0.25),
        new("synthetic 16 numeric", 16, 0, 0, 0.1),
        new("synthetic mixed 24", 12, 6, 6, 0.1),
    ];

    private const int LatentFactors = 3;
    private const int SyntheticTrainRows = 3000;
    private const int SyntheticTestNormal = 1000;
    private const int SyntheticTestAnomalies = 100;
    private const int SwappedCells = 3;
    private const int Categories = 5;

    public static int Run(string? cardioPath, int cardioSplits, int syntheticSeeds, VaeTrainingOptions options, TextWriter output, bool quantileMaps = false)
    {
        var c = CultureInfo.InvariantCulture;
        output.WriteLine(string.Create(c, $"options: {Describe(options)}{(quantileMaps ? ", quantile maps" : "")}"));
        var clock = Stopwatch.StartNew();
        if (cardioPath is not null && cardioSplits > 0)
            Report(output, "cardio", Cardio(cardioPath, cardioSplits, options, quantileMaps: quantileMaps));
        foreach (var set in SyntheticSets)
        {
            if (syntheticSeeds > 0)
                Report(output, set.Name, [.. Enumerable.Range(0, syntheticSeeds).Select(seed => Synthetic(set, seed, options, quantileMaps))]);
        }
        output.WriteLine(string.Create(c, $"total {clock.Elapsed.TotalSeconds:F0} s"));
        return 0;
    }

    internal static string Describe(VaeTrainingOptions o) =>
        string.Create(CultureInfo.InvariantCulture,
            $"hidden {(o.Hidden is null ? "auto" : string.Join("-", o.Hidden))}, latent {o.Latent?.ToString(CultureInfo.InvariantCulture) ?? "auto"}, β {o.Beta}, " +
            $"epochs {o.Epochs?.ToString(CultureInfo.InvariantCulture) ?? "auto"}, L {o.ScoringSamples}, {o.Activation}, {o.NumericVariance}, " +
            $"log-variance [{o.NumericLogVarMin}, {o.NumericLogVarMax}], weight decay {o.WeightDecay}, threads {o.Threads?.ToString(CultureInfo.InvariantCulture) ?? "auto"}, " +
            $"ensemble {o.Ensemble}{(o.ScoreFunction == ScoreFunction.NegativeElbo ? ", score -ELBO" : "")}");

    private static void Report(TextWriter output, string name, IReadOnlyList<double> aurocs)
    {
        double mean = aurocs.Average();
        double sd = Math.Sqrt(aurocs.Sum(a => (a - mean) * (a - mean)) / Math.Max(1, aurocs.Count - 1));
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{name,-22} mean AUROC {mean:F4} ± {sd:F4} (sd over {aurocs.Count}; min {aurocs.Min():F4}, max {aurocs.Max():F4})"));
    }

    /// <summary>
    /// AUROC per split on cardio (every column but the last numeric, the last the 0/1 label): split <c>seed</c> trains
    /// on a seeded random half of the normal rows, standardized as the feature schema does, and tests on the other
    /// half plus all anomalies. The cardio quality test runs its first five splits.
    /// </summary>
    /// <param name="onSplit">Called after each split with its seed, AUROC and training result.</param>
    internal static List<double> Cardio(string path, int splits, VaeTrainingOptions options, Action<int, double, VaeTrainingResult>? onSplit = null, bool quantileMaps = false)
    {
        var lines = File.ReadAllLines(path);
        int f = lines[0].Split(',').Length - 1;
        var rows = new double[lines.Length - 1][];
        var labels = new int[lines.Length - 1];
        for (int i = 1; i < lines.Length; i++)
        {
            var cells = lines[i].Split(',');
            if (cells.Length != f + 1)
                throw new CliException($"{path}: line {i + 1} has {cells.Length} cells, expected {f + 1}.");
            rows[i - 1] = [.. cells.Take(f).Select(s => double.Parse(s, CultureInfo.InvariantCulture))];
            labels[i - 1] = (int)double.Parse(cells[f], CultureInfo.InvariantCulture);
        }

        var features = Enumerable.Repeat(VaeFeature.Numeric(), f).ToArray();
        var aurocs = new List<double>();
        for (int seed = 0; seed < splits; seed++)
        {
            // Same split stream as CardioQualityTests, so its five splits are the first five here.
            var rng = new DeterministicRandom((ulong)seed, 0xCA4D);
            int[] normals = [.. Enumerable.Range(0, rows.Length).Where(i => labels[i] == 0)];
            rng.Shuffle(normals);
            int[] train = normals[..(normals.Length / 2)];
            int[] test = [.. normals[(normals.Length / 2)..], .. Enumerable.Range(0, rows.Length).Where(i => labels[i] == 1)];
            var columns = FitColumns(rows, train, f, quantileMaps);
            var (auroc, result) = Evaluate(features, Standardize(rows, train, columns), Standardize(rows, test, columns),
                [.. test.Select(i => labels[i])], options with { Seed = seed });
            aurocs.Add(auroc);
            onSplit?.Invoke(seed, auroc, result);
        }

        return aurocs;
    }

    private static float[] Standardize(double[][] rows, int[] index, FittedFeature[] columns)
    {
        int f = columns.Length;
        var v = new float[index.Length * f];
        for (int r = 0; r < index.Length; r++)
        {
            for (int j = 0; j < f; j++)
                v[r * f + j] = columns[j].Standardize((float)rows[index[r]][j]);
        }

        return v;
    }

    /// <summary>Per column the feature schema's own fit (robust center and scale: median, IQR/1.349, then the std, then 1;
    /// and its tail squash): cardio's column 5 is constant on the normal rows but one, so in about half the splits the
    /// training half is constant and must scale by 1 exactly as the product does.</summary>
    private static FittedFeature[] FitColumns(double[][] rows, int[] index, int f, bool quantileMaps)
    {
        var columns = new FittedFeature[f];
        for (int j = 0; j < f; j++)
        {
            double[] t = [.. index.Select(i => rows[i][j])];
            var (center, scale) = FeatureSchema.RobustLocationScale(t);
            columns[j] = FeatureSchema.FitNumericFeature($"c{j}", t, center, scale, quantileMap: quantileMaps);
        }

        return columns;
    }

    private static (double Auroc, VaeTrainingResult Training) Evaluate(VaeFeature[] features, float[] train, float[] test, int[] testLabels,
        VaeTrainingOptions options)
    {
        int f = features.Length;
        var data = new VaeDataset(features, train, Ones(train.Length), train.Length / f);
        // The product's training and combination of K members (Trainer uses the same VaeEnsemble; the exported graph
        // reproduces VaeEnsemble.Score within 1e-4, tested), without the ONNX round trip per split.
        var members = VaeEnsemble.Train(data, options);
        var scores = new float[testLabels.Length];
        VaeEnsemble.Score([.. members.Select(m => m.Model)], test, Ones(test.Length), scores);
        return (DetectionMetrics.Auroc([.. scores.Select(s => (double)s)], testLabels), members[0]);
    }

    private static float[] Ones(int n)
    {
        var a = new float[n];
        Array.Fill(a, 1f);
        return a;
    }

    /// <summary>
    /// Rows from a 3-d standard-normal latent through fixed random nonlinear maps (numeric: a tanh of one
    /// projection plus a product of two others, plus Gaussian noise; binary: a Bernoulli of a logistic projection;
    /// categorical: a softmax over projections), standardized by the training rows' mean and standard deviation.
    /// An anomaly is a held-out normal row with <see cref="SwappedCells"/> cells taken from another row: each value
    /// is typical on its own, only the dependencies between features break.
    /// </summary>
    private static double Synthetic(SyntheticSet set, int seed, VaeTrainingOptions options, bool quantileMaps)
    {
        int f = set.Numeric + set.Binary + set.Categorical;
        var maps = new DeterministicRandom(0x5E7, (ulong)f);
        var weights = new double[f, Categories, 3 * LatentFactors];
        for (int j = 0; j < f; j++)
        {
            for (int k = 0; k < Categories; k++)
            {
                for (int w = 0; w < 3 * LatentFactors; w++)
                    weights[j, k, w] = maps.NextGaussian();
            }
        }

        var rng = new DeterministicRandom((ulong)seed, 0xDA7A);
        int total = SyntheticTrainRows + SyntheticTestNormal + SyntheticTestAnomalies;
        var values = new float[total * f];
        var u = new double[LatentFactors];
        for (int r = 0; r < total; r++)
        {
            for (int k = 0; k < LatentFactors; k++)
                u[k] = rng.NextGaussian();
            for (int j = 0; j < f; j++)
            {
                double Projection(int k, int part)
                {
                    double s = 0;
                    for (int q = 0; q < LatentFactors; q++)
                        s += weights[j, k, part * LatentFactors + q] * u[q];
                    return s;
                }

                double value;
                if (j < set.Numeric)
                {
                    value = 2 * Math.Tanh(Projection(0, 0)) + 0.5 * Projection(0, 1) * Projection(0, 2) + set.Noise * rng.NextGaussian();
                }
                else if (j < set.Numeric + set.Binary)
                {
                    value = rng.NextDouble() < 1 / (1 + Math.Exp(-2 * Projection(0, 0))) ? 1 : 0;
                }
                else
                {
                    // Categories 1..K-1; 0 stays the unknown bucket.
                    var logits = Enumerable.Range(1, Categories - 1).Select(k => 1.5 * Projection(k, 0)).ToArray();
                    double max = logits.Max(), sum = logits.Sum(l => Math.Exp(l - max)), pick = rng.NextDouble() * sum;
                    int chosen = 0;
                    double acc = Math.Exp(logits[0] - max);
                    while (acc < pick && chosen < logits.Length - 1)
                        acc += Math.Exp(logits[++chosen] - max);
                    value = chosen + 1;
                }

                values[r * f + j] = (float)value;
            }
        }

        // Anomalies: the last rows, each with a few cells swapped in from a random training row.
        var cells = Enumerable.Range(0, f).ToArray();
        for (int r = SyntheticTrainRows + SyntheticTestNormal; r < total; r++)
        {
            int donor = rng.NextInt(SyntheticTrainRows);
            rng.Shuffle(cells);
            for (int s = 0; s < SwappedCells; s++)
                values[r * f + cells[s]] = values[donor * f + cells[s]];
        }

        // Standardize numeric columns by the training rows.
        for (int j = 0; j < set.Numeric; j++)
        {
            double mean = 0, square = 0;
            for (int r = 0; r < SyntheticTrainRows; r++)
            {
                mean += values[r * f + j];
                square += (double)values[r * f + j] * values[r * f + j];
            }

            mean /= SyntheticTrainRows;
            double sd = Math.Sqrt(Math.Max(1e-12, square / SyntheticTrainRows - mean * mean));
            double[] t = [.. Enumerable.Range(0, SyntheticTrainRows).Select(r => (double)values[r * f + j])];
            var column = FeatureSchema.FitNumericFeature("s", t, mean, sd, quantileMap: quantileMaps);
            for (int r = 0; r < total; r++)
                values[r * f + j] = column.Standardize(values[r * f + j]);
        }

        var features = Enumerable.Range(0, f).Select(j => j < set.Numeric ? VaeFeature.Numeric()
            : j < set.Numeric + set.Binary ? VaeFeature.Binary() : VaeFeature.Categorical(Categories)).ToArray();
        var labels = Enumerable.Range(0, SyntheticTestNormal + SyntheticTestAnomalies).Select(i => i < SyntheticTestNormal ? 0 : 1).ToArray();
        return Evaluate(features, values[..(SyntheticTrainRows * f)], values[(SyntheticTrainRows * f)..], labels, options with { Seed = seed }).Auroc;
    }
}
