using AnomalyVae.Model;

namespace AnomalyVae.UnitTests.Model;

public class DetectionMetricsTests
{
    // Small example: scores 0.1, 0.4, 0.35, 0.8 with labels 0, 0, 1, 1.
    private static readonly double[] s_scores = [0.1, 0.4, 0.35, 0.8];
    private static readonly int[] s_labels = [0, 0, 1, 1];

    [Fact]
    public void AurocOfTheSmallExample()
    {
        // (anomaly, normal) pairs: 0.35>0.1 win, 0.35<0.4 loss, 0.8>0.1 win, 0.8>0.4 win → 3/4.
        Assert.Equal(0.75, DetectionMetrics.Auroc(s_scores, s_labels), 12);
    }

    [Fact]
    public void AurocCountsTiesAsHalf()
    {
        // scores 1, 2, 2, 3 / labels 0, 1, 0, 1. Pairs: 2>1 win, 2=2 half, 3>1 win, 3>2 win → 3.5/4.
        Assert.Equal(0.875, DetectionMetrics.Auroc([1, 2, 2, 3], [0, 1, 0, 1]), 12);
        // Everything tied → 0.5.
        Assert.Equal(0.5, DetectionMetrics.Auroc([7, 7, 7, 7, 7], [1, 0, 0, 1, 0]), 12);
    }

    [Fact]
    public void AveragePrecisionOfTheSmallExample()
    {
        // Descending: 0.8 (anomaly) P=1, R=1/2 → 1/2·1; 0.4 (normal) R unchanged; 0.35 (anomaly) P=2/3, R=1 → 1/2·2/3.
        // AP = 1/2 + 1/3 = 5/6.
        Assert.Equal(5.0 / 6, DetectionMetrics.AveragePrecision(s_scores, s_labels), 12);
    }

    [Fact]
    public void AveragePrecisionTakesTiedScoresTogether()
    {
        // scores 3, 2, 2, 1 / labels 1, 0, 1, 0: 3 → P=1, ΔR=1/2; the tied pair {2, 2} enters at once: 3 flagged,
        // 2 true → P=2/3, ΔR=1/2. AP = 1/2 + 1/3 = 5/6 — whichever order the tied rows come in.
        Assert.Equal(5.0 / 6, DetectionMetrics.AveragePrecision([3, 2, 2, 1], [1, 0, 1, 0]), 12);
        Assert.Equal(5.0 / 6, DetectionMetrics.AveragePrecision([3, 2, 2, 1], [1, 1, 0, 0]), 12);
    }

    [Fact]
    public void PerfectAndReversedSeparation()
    {
        double[] scores = [1, 2, 3, 4, 5, 6];
        int[] labels = [0, 0, 0, 0, 1, 1];
        Assert.Equal(1, DetectionMetrics.Auroc(scores, labels), 12);
        Assert.Equal(1, DetectionMetrics.AveragePrecision(scores, labels), 12);

        var reversed = scores.Select(s => -s).ToArray();
        Assert.Equal(0, DetectionMetrics.Auroc(reversed, labels), 12);
        // Reversed: anomalies are ranked 5th and 6th → AP = 1/2·1/5 + 1/2·2/6 = 0.1 + 1/6.
        Assert.Equal(0.1 + (1.0 / 6), DetectionMetrics.AveragePrecision(reversed, labels), 12);
    }

    [Fact]
    public void RandomScoresGiveChanceLevels()
    {
        var random = new Random(11);
        var n = 20_000;
        var scores = Enumerable.Range(0, n).Select(_ => random.NextDouble()).ToArray();
        var labels = Enumerable.Range(0, n).Select(_ => random.NextDouble() < 0.1 ? 1 : 0).ToArray();
        Assert.InRange(DetectionMetrics.Auroc(scores, labels), 0.48, 0.52);
        Assert.InRange(DetectionMetrics.AveragePrecision(scores, labels), labels.Average() - 0.02, labels.Average() + 0.02);
    }

    [Fact]
    public void AurocEqualsBruteForcePairCountingWithTies()
    {
        var random = new Random(12);
        var scores = Enumerable.Range(0, 300).Select(_ => (double)random.Next(0, 20)).ToArray(); // many ties
        var labels = Enumerable.Range(0, 300).Select(_ => random.Next(0, 3) == 0 ? 1 : 0).ToArray();
        double wins = 0, pairs = 0;
        for (var i = 0; i < scores.Length; i++)
        {
            for (var j = 0; j < scores.Length; j++)
            {
                if (labels[i] != 1 || labels[j] != 0)
                    continue;
                pairs++;
                wins += scores[i] > scores[j] ? 1 : scores[i] == scores[j] ? 0.5 : 0;
            }
        }

        Assert.Equal(wins / pairs, DetectionMetrics.Auroc(scores, labels), 12);
    }

    [Fact]
    public void CountsAtAThreshold()
    {
        // Flagged when score > 0.35: 0.4 (normal) FP, 0.8 (anomaly) TP; 0.35 (anomaly) is not above → FN; 0.1 TN.
        var m = DetectionMetrics.AtThreshold(s_scores, s_labels, 0.35);
        Assert.Equal(new ThresholdMetrics(1, 1, 1, 1), m);
        Assert.Equal(0.5, m.Precision);
        Assert.Equal(0.5, m.Recall);
        Assert.Equal(0.5, m.F1);
        Assert.Equal(0.5, m.FalsePositiveRate);

        // Threshold 0.5: only 0.8 flagged → P = 1, R = 1/2, F1 = 2·1·0.5/1.5 = 2/3.
        var strict = DetectionMetrics.AtThreshold(s_scores, s_labels, 0.5);
        Assert.Equal((1.0, 0.5, 0.0), (strict.Precision, strict.Recall, strict.FalsePositiveRate));
        Assert.Equal(2.0 / 3, strict.F1, 12);

        // Nothing flagged: precision and F1 are 0, not NaN.
        var none = DetectionMetrics.AtThreshold(s_scores, s_labels, 10);
        Assert.Equal((0.0, 0.0, 0.0), (none.Precision, none.Recall, none.F1));
    }

    [Fact]
    public void CaughtByKindCountsEachKindsAnomaliesAboveTheThreshold()
    {
        double[] scores = [5, 1, 6, 2, 9, 8, 0.5];
        int[] labels = [1, 1, 1, 0, 0, 1, 1];
        string[] kinds = ["drift", "drift", "spike", "", "", "drift", " "];
        var byKind = DetectionMetrics.CaughtByKind(scores, labels, kinds, threshold: 4);
        Assert.Equal(
            [new KindCatch("drift", 2, 3), new KindCatch("spike", 1, 1), new KindCatch("(none)", 0, 1)],
            byKind);
        Assert.Throws<ArgumentException>(() => DetectionMetrics.CaughtByKind(scores, labels, ["drift"], 4));
    }

    [Fact]
    public void BadInputIsRejected()
    {
        Assert.Throws<ArgumentException>(() => DetectionMetrics.Auroc([1, 2], [0]));
        Assert.Contains("label 1 is 2", Assert.Throws<ArgumentException>(() => DetectionMetrics.Auroc([1, 2], [0, 2])).Message);
        Assert.Contains("NaN", Assert.Throws<ArgumentException>(() => DetectionMetrics.AveragePrecision([1, double.NaN], [0, 1])).Message);
        Assert.Contains("at least one anomaly", Assert.Throws<ArgumentException>(() => DetectionMetrics.Auroc([1, 2], [0, 0])).Message);
        Assert.Throws<ArgumentException>(() => DetectionMetrics.AveragePrecision([1, 2], [1, 1]));
        Assert.Throws<ArgumentException>(() => DetectionMetrics.AtThreshold([1, 2], [0, -1], 1));
    }
}
