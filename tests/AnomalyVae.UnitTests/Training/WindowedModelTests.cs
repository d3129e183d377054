using System.Globalization;
using System.Text;
using AnomalyVae.Inference;
using AnomalyVae.Model;
using AnomalyVae.Training;
using AnomalyVae.Training.Engine;
using AnomalyVae.Training.Export;

namespace AnomalyVae.UnitTests.Training;

/// <summary>
/// Windowed models end to end on CSV: training, the ONNX graph against the engine, the checker, the metadata, rows
/// in any order, and Donut's univariate setting (one KPI per entity) where only the window sees the fault.
/// </summary>
public sealed class WindowedModelTests : IDisposable
{
    private static readonly VaeTrainingOptions Quick = new() { Hidden = [32], Latent = 4, Epochs = 6, BatchSize = 64, Threads = 1, Seed = 5 };
    private readonly string _directory = Directory.CreateTempSubdirectory("avae-window-").FullName;

    [Fact]
    public void OnnxRuntimeScoresTheLastStepOfEachWindowLikeTheEngine()
    {
        string train = WriteFleet("train.csv", entities: 6, steps: 150, seed: 1, missingRate: 0.05);
        var trained = Trainer.TrainWindowed(train, spec: null, "machine", "ts", steps: 5, Quick);
        Assert.Equal(new WindowDefinition(5, "machine", "ts") { MaskFlaggedHistory = true }, trained.Window);
        Assert.DoesNotContain(trained.Schema.Features, f => f.Name is "machine" or "ts" or "id");
        using var bundle = ModelBundle.Load(trained.ToOnnx(), "windowed");
        Assert.Equal(trained.Window, bundle.Window);

        string score = WriteFleet("score.csv", entities: 4, steps: 40, seed: 9, missingRate: 0.1, shuffle: true);
        var table = FeatureTable.Load(score, bundle.Schema, bundle.Window!.Columns);
        // The graph against the engine on the same inputs: windows without the flagged-history rule (tested below).
        var windows = new FeatureWindows(table, bundle.Window with { MaskFlaggedHistory = false });
        var onnx = bundle.Score(windows, batchRows: 37); // batches of odd sizes: the graph takes any batch size
        AssertClose(onnx.Scores, bundle.Score(windows, batchRows: 5).Scores, "score in batches of 5");

        int f = bundle.Schema.Count;
        var (values, mask) = windows.Standardized();
        var scores = new float[table.RowCount];
        var features = new float[table.RowCount * f];
        using (var scorer = new VaeScorer(trained.Result.Model, threads: 1, scoredFrom: windows.Width - f))
            scorer.Score(values, mask, scores, features);
        AssertClose(scores, onnx.Scores, "score");
        AssertClose(features, onnx.FeatureScores, "feature score");

        // An entity's first event has no history: its window is masked except the last step.
        int first = Enumerable.Range(0, table.RowCount).First(r => windows.Previous(r) < 0);
        var x = new float[windows.Width];
        var m = new float[windows.Width];
        windows.CopyRaw(first, x, m);
        Assert.All(m[..^f], v => Assert.Equal(0f, v));
        Assert.Contains(1f, m[^f..]);
    }

    [Fact]
    public void WindowedModelFileReadsBack()
    {
        string path = Path.Combine(_directory, "windowed.onnx");
        var trained = Trainer.TrainWindowed(WriteFleet("train.csv", entities: 3, steps: 80, seed: 2), null, "machine", null, steps: 4, Quick);
        trained.Save(path);

        var contents = ModelFile.Read(path);
        Assert.Equal(new WindowDefinition(4, "machine") { MaskFlaggedHistory = true }, contents.Window);
        Assert.Equal(4 * contents.Schema.Count, contents.Model.Layout.FeatureCount);
        using var bundle = ModelBundle.Load(path);
        Assert.Equal(4 * bundle.Schema.Count, bundle.InputWidth);
    }

    [Fact]
    public void RowsInAnyOrderScoreTheSameAndComeBackInInputOrder()
    {
        string sorted = WriteFleet("sorted.csv", entities: 4, steps: 60, seed: 3);
        string shuffled = WriteFleet("shuffled.csv", entities: 4, steps: 60, seed: 3, shuffle: true);
        var trained = Trainer.TrainWindowed(sorted, null, "machine", "ts", steps: 6, Quick);
        using var bundle = ModelBundle.Load(trained.ToOnnx(), "windowed");
        string[] columns = [.. bundle.Window!.Columns, "id"];
        var a = FeatureTable.Load(sorted, bundle.Schema, columns);
        var b = FeatureTable.Load(shuffled, bundle.Schema, columns);
        var scoreA = bundle.Score(a).Scores;
        var scoreB = bundle.Score(b).Scores;
        var byId = a.GetExtraColumn("id").Select((id, r) => (id, r)).ToDictionary(p => p.id, p => scoreA[p.r]);
        var ids = b.GetExtraColumn("id");
        Assert.NotEqual(a.GetExtraColumn("id"), ids); // really shuffled
        for (int r = 0; r < ids.Count; r++)
            Assert.Equal(byId[ids[r]], scoreB[r], 1e-5f);
    }

    [Fact]
    public void FlaggedHistoryIsMaskedInEachEntitysOrderWhateverTheBatches()
    {
        var trained = Trainer.TrainWindowed(WriteFleet("train.csv", entities: 5, steps: 120, seed: 4), null, "machine", "ts", steps: 5, Quick);
        using var bundle = ModelBundle.Load(trained.ToOnnx(), "windowed");
        Assert.True(bundle.Window!.MaskFlaggedHistory);
        var table = FeatureTable.Load(WriteFleet("spiky.csv", entities: 4, steps: 60, seed: 8, spikeRate: 0.05, shuffle: true), bundle.Schema, bundle.Window.Columns);
        var windows = new FeatureWindows(table, bundle.Window);
        var scores = bundle.Score(windows, batchRows: 3).Scores;
        AssertClose(scores, bundle.Score(windows, batchRows: 1000).Scores, "batches of 3 against one batch"); // batch boundaries change nothing

        // Reference: one entity after the other, each event alone; a window holding flagged predecessors is scored
        // again with them masked by hand, and the lower score is kept.
        double threshold = bundle.Calibration.Threshold;
        int f = bundle.Schema.Count;
        var flagged = new bool[table.RowCount];
        var reference = new float[table.RowCount];
        using var scorer = bundle.CreateScorer(1);
        var entity = table.GetExtraColumn("machine");
        foreach (int row in Enumerable.Range(0, table.RowCount).OrderBy(r => entity[r], StringComparer.Ordinal).ThenBy(windows.Occurrence))
        {
            windows.CopyRaw(row, scorer.X, scorer.Mask);
            scorer.Run(1);
            reference[row] = scorer.Scores(1)[0];
            bool masked = false;
            int previous = windows.Previous(row);
            for (int step = windows.Steps - 2; step >= 0 && previous >= 0; step--, previous = windows.Previous(previous))
            {
                if (flagged[previous])
                {
                    scorer.X.Slice(step * f, f).Clear();
                    scorer.Mask.Slice(step * f, f).Clear();
                    masked = true;
                }
            }
            if (masked)
            {
                scorer.Run(1);
                reference[row] = Math.Min(reference[row], scorer.Scores(1)[0]);
            }
            flagged[row] = reference[row] > threshold;
        }
        AssertClose(reference, scores, "sequential reference");

        // The rule lowers exactly the scores of windows that hold a flagged step, and only lowers them.
        var whole = bundle.Score(new FeatureWindows(table, bundle.Window with { MaskFlaggedHistory = false })).Scores;
        bool HoldsFlagged(int row)
        {
            int p = windows.Previous(row);
            for (int k = 0; k < windows.Steps - 1 && p >= 0; k++, p = windows.Previous(p))
            {
                if (flagged[p])
                    return true;
            }
            return false;
        }
        var affected = Enumerable.Range(0, table.RowCount).Where(HoldsFlagged).ToArray();
        Assert.NotEmpty(affected);
        Assert.Contains(affected, r => scores[r] < whole[r] - 1e-3);
        // Within 1e-5 as below: the two calls batch the rows differently, and ONNX Runtime rounds a row's score up to a
        // few ulps apart depending on the batch it is in (measured before and after the 2026-12-06 graph changes).
        Assert.All(affected, r => Assert.True(scores[r] <= whole[r] + 1e-5f, $"row {r}: {scores[r]} above its whole-window score {whole[r]}"));
        Assert.All(Enumerable.Range(0, table.RowCount).Except(affected), r => Assert.Equal(whole[r], scores[r], 1e-5f));
    }

    [Fact]
    public void AnEmptyEntityOrAnUnreadableOrderValueIsAClearError()
    {
        string path = Path.Combine(_directory, "bad.csv");
        File.WriteAllText(path, "machine,ts,v\nm1,1,0.5\n,2,0.4\n");
        var schema = FeatureSchema.Fit(FeatureSpec.Parse("""{"features":[{"name":"v","kind":"numeric"}]}"""), path);
        var table = FeatureTable.Load(path, schema, ["machine", "ts"]);
        var empty = Assert.Throws<CsvFormatException>(() => new FeatureWindows(table, new WindowDefinition(3, "machine", "ts")));
        Assert.Contains("line 3", empty.Message);
        Assert.Contains("entity is empty", empty.Message);

        File.WriteAllText(path, "machine,ts,v\nm1,1,0.5\nm1,soon,0.4\n");
        table = FeatureTable.Load(path, schema, ["machine", "ts"]);
        var order = Assert.Throws<CsvFormatException>(() => new FeatureWindows(table, new WindowDefinition(3, "machine", "ts")));
        Assert.Contains("'soon' is neither a number nor a date/time", order.Message);
        Assert.Throws<FeatureSpecException>(() => new WindowDefinition(1, "machine").Validate());
    }

    [Fact]
    public void UnivariateKpiWindowCatchesAStuckSensorThatEachReadingAloneHides()
    {
        // Donut's setting: one numeric KPI per entity, a daily-like cycle. A stuck segment repeats a value the
        // cycle passes through anyway, so each reading is normal on its own; its window is not.
        string train = WriteKpi("kpi-train.csv", seed: 1, stuck: false);
        string test = WriteKpi("kpi-test.csv", seed: 2, stuck: true);
        var spec = FeatureSpec.Parse("""{"features":[{"name":"value","kind":"numeric"}]}""");
        var options = Quick with { Epochs = 30, Hidden = [32], Latent = 3 };
        var windowed = Trainer.TrainWindowed(train, spec, "kpi", "ts", steps: 8, options);
        var single = Trainer.Train(train, spec, options);

        using var w = ModelBundle.Load(windowed.ToOnnx(), "windowed");
        using var s = ModelBundle.Load(single.ToOnnx(), "single");
        var table = FeatureTable.Load(test, w.Schema, ["kpi", "ts", "label"]);
        int[] labels = table.GetLabels("label");
        double windowedAuroc = DetectionMetrics.Auroc([.. w.Score(table).Scores.Select(v => (double)v)], labels);
        double singleAuroc = DetectionMetrics.Auroc([.. s.Score(table).Scores.Select(v => (double)v)], labels);
        // Measured (seeded, one thread, so the same on every machine): windowed 0.910 (0.897 before the flagged-history
        // rule and missing-data injection), per event 0.713.
        Assert.True(windowedAuroc >= 0.85, $"windowed AUROC {windowedAuroc:F3} on stuck readings (per event {singleAuroc:F3})");
        Assert.True(windowedAuroc - singleAuroc >= 0.1, $"the window should see what single readings hide: windowed {windowedAuroc:F3}, per event {singleAuroc:F3}");
    }

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    /// <summary>Machines with two coupled readings and a status; rows interleaved across machines (or shuffled).</summary>
    private string WriteFleet(string name, int entities, int steps, int seed, double missingRate = 0, bool shuffle = false, double spikeRate = 0)
    {
        var random = new Random(seed);
        var lines = new List<string>();
        for (int t = 0; t < steps; t++)
        {
            for (int e = 0; e < entities; e++)
            {
                double phase = 2 * Math.PI * (t + 7 * e) / 24;
                double load = 50 + 30 * Math.Sin(phase) + random.NextDouble() * 3;
                double temperature = 20 + 0.3 * load + random.NextDouble();
                if (spikeRate > 0 && random.NextDouble() < spikeRate)
                    temperature += 40;
                string status = load > 70 ? "high" : load < 30 ? "low" : "mid";
                string Cell(double v) => random.NextDouble() < missingRate ? "" : v.ToString("F3", CultureInfo.InvariantCulture);
                lines.Add($"r{t}-{e},m{e},{t * 60 + e},{Cell(load)},{Cell(temperature)},{status}");
            }
        }
        if (shuffle)
            lines = [.. lines.OrderBy(_ => random.Next())];
        string path = Path.Combine(_directory, name);
        File.WriteAllText(path, "id,machine,ts,load,temperature,status\n" + string.Join('\n', lines) + "\n");
        return path;
    }

    /// <summary>Four KPIs, a period of 20 steps plus noise; with <paramref name="stuck"/>, segments frozen at one reading.</summary>
    private string WriteKpi(string name, int seed, bool stuck)
    {
        var random = new Random(seed);
        var text = new StringBuilder("kpi,ts,value,label\n");
        for (int k = 0; k < 4; k++)
        {
            double frozen = 0;
            int stuckLeft = 0;
            for (int t = 0; t < 600; t++)
            {
                double value = 10 + 5 * Math.Sin(2 * Math.PI * t / 20 + k) + 0.2 * (random.NextDouble() - 0.5);
                int label = 0;
                if (stuck && stuckLeft == 0 && t % 100 == 50)
                {
                    stuckLeft = 10;
                    frozen = value;
                }
                if (stuckLeft > 0)
                {
                    // The first few stuck readings still look like the cycle; from the fourth on the window shows the fault.
                    label = stuckLeft <= 7 ? 1 : 0;
                    value = frozen;
                    stuckLeft--;
                }
                text.Append(CultureInfo.InvariantCulture, $"k{k},{t},{value:F3},{label}\n");
            }
        }
        string path = Path.Combine(_directory, name);
        File.WriteAllText(path, text.ToString());
        return path;
    }

    private static void AssertClose(float[] expected, float[] actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            float tolerance = 1e-4f * Math.Max(1f, Math.Max(Math.Abs(expected[i]), Math.Abs(actual[i])));
            Assert.True(Math.Abs(expected[i] - actual[i]) <= tolerance, $"{what} {i}: engine {expected[i]}, ONNX Runtime {actual[i]}");
        }
    }
}
