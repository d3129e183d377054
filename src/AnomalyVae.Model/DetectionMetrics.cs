namespace AnomalyVae.Model;

/// <summary>Counts and rates of a detector's decisions at one threshold (a row is flagged when score &gt; threshold).</summary>
/// <param name="TruePositives">Anomalies flagged.</param>
/// <param name="FalsePositives">Normal rows flagged.</param>
/// <param name="TrueNegatives">Normal rows not flagged.</param>
/// <param name="FalseNegatives">Anomalies missed.</param>
public readonly record struct ThresholdMetrics(long TruePositives, long FalsePositives, long TrueNegatives, long FalseNegatives)
{
    /// <summary>TP / (TP + FP); 0 when nothing is flagged.</summary>
    public double Precision => Ratio(TruePositives, TruePositives + FalsePositives);

    /// <summary>TP / (TP + FN); 0 when there are no anomalies.</summary>
    public double Recall => Ratio(TruePositives, TruePositives + FalseNegatives);

    /// <summary>Harmonic mean of precision and recall; 0 when both are 0.</summary>
    public double F1 => Precision + Recall > 0 ? 2 * Precision * Recall / (Precision + Recall) : 0;

    /// <summary>FP / (FP + TN); 0 when there are no normal rows.</summary>
    public double FalsePositiveRate => Ratio(FalsePositives, FalsePositives + TrueNegatives);

    private static double Ratio(long numerator, long denominator) => denominator == 0 ? 0 : (double)numerator / denominator;
}

/// <summary>Labelled anomalies of one kind: how many a detector flagged out of how many there are.</summary>
public readonly record struct KindCatch(string Kind, int Caught, int Injected);

/// <summary>
/// Detection quality of anomaly scores (higher = more anomalous) against labels (1 = anomaly, 0 = normal).
/// </summary>
public static class DetectionMetrics
{
    /// <summary>
    /// Area under the ROC curve, via the Mann–Whitney U statistic: the probability that a random anomaly
    /// scores above a random normal row, ties counting one half (mid-ranks).
    /// </summary>
    /// <exception cref="ArgumentException">Lengths differ, a label is not 0/1, a score is NaN, or one class is absent.</exception>
    public static double Auroc(ReadOnlySpan<double> scores, ReadOnlySpan<int> labels)
    {
        var (order, positives, negatives) = Prepare(scores, labels, "AUROC");
        var sorted = scores.ToArray();
        Array.Sort(sorted, order);

        // Sum of the (1-based, tie-averaged) ranks of the anomalies.
        var rankSum = 0.0;
        for (var i = 0; i < sorted.Length;)
        {
            var end = i + 1;
            while (end < sorted.Length && sorted[end] == sorted[i])
                end++;
            var midRank = (i + 1 + end) / 2.0;
            for (var k = i; k < end; k++)
            {
                if (labels[order[k]] == 1)
                    rankSum += midRank;
            }

            i = end;
        }

        var u = rankSum - (positives * (positives + 1) / 2.0);
        return u / ((double)positives * negatives);
    }

    /// <summary>
    /// Area under the precision–recall curve as average precision: Σ (R_k − R_{k−1})·P_k over the distinct score
    /// thresholds from highest to lowest, tied scores entering together (so ties are not ordered arbitrarily).
    /// </summary>
    /// <exception cref="ArgumentException">Lengths differ, a label is not 0/1, a score is NaN, or one class is absent.</exception>
    public static double AveragePrecision(ReadOnlySpan<double> scores, ReadOnlySpan<int> labels)
    {
        var (order, positives, _) = Prepare(scores, labels, "average precision");
        var sorted = scores.ToArray();
        Array.Sort(sorted, order);

        long truePositives = 0, flagged = 0;
        var ap = 0.0;
        for (var i = sorted.Length - 1; i >= 0;)
        {
            var start = i;
            while (start > 0 && sorted[start - 1] == sorted[i])
                start--;
            var newPositives = 0;
            for (var k = start; k <= i; k++)
                newPositives += labels[order[k]];
            flagged += i - start + 1;
            truePositives += newPositives;
            ap += (double)newPositives / positives * ((double)truePositives / flagged);
            i = start - 1;
        }

        return ap;
    }

    /// <summary>Confusion counts when rows with score &gt; <paramref name="threshold"/> are flagged.</summary>
    /// <exception cref="ArgumentException">Lengths differ, a label is not 0/1, or a score is NaN.</exception>
    /// <summary>
    /// Per anomaly kind, how many labelled anomalies of that kind score above <paramref name="threshold"/> (caught)
    /// out of how many there are (injected), kinds in first-appearance order. Rows labelled 0 and anomalies with an
    /// empty kind are counted under no kind (an anomaly without a kind is reported as "(none)").
    /// </summary>
    /// <exception cref="ArgumentException">Lengths differ, or a label is not 0/1.</exception>
    public static IReadOnlyList<KindCatch> CaughtByKind(ReadOnlySpan<double> scores, ReadOnlySpan<int> labels, IReadOnlyList<string> kinds, double threshold)
    {
        ArgumentNullException.ThrowIfNull(kinds);
        Validate(scores, labels);
        if (kinds.Count != labels.Length)
            throw new ArgumentException($"{kinds.Count} kinds for {labels.Length} labels.", nameof(kinds));
        var order = new List<string>();
        var counts = new Dictionary<string, (int Caught, int Injected)>(StringComparer.Ordinal);
        for (var i = 0; i < labels.Length; i++)
        {
            if (labels[i] != 1)
                continue;
            var kind = string.IsNullOrWhiteSpace(kinds[i]) ? "(none)" : kinds[i].Trim();
            if (!counts.TryGetValue(kind, out var c))
                order.Add(kind);
            counts[kind] = (c.Caught + (scores[i] > threshold ? 1 : 0), c.Injected + 1);
        }

        return [.. order.Select(k => new KindCatch(k, counts[k].Caught, counts[k].Injected))];
    }

    public static ThresholdMetrics AtThreshold(ReadOnlySpan<double> scores, ReadOnlySpan<int> labels, double threshold)
    {
        Validate(scores, labels);
        long tp = 0, fp = 0, tn = 0, fn = 0;
        for (var i = 0; i < scores.Length; i++)
        {
            var flagged = scores[i] > threshold;
            if (labels[i] == 1)
            {
                if (flagged)
                    tp++;
                else
                    fn++;
            }
            else if (flagged)
            {
                fp++;
            }
            else
            {
                tn++;
            }
        }

        return new ThresholdMetrics(tp, fp, tn, fn);
    }

    private static (int[] Order, long Positives, long Negatives) Prepare(ReadOnlySpan<double> scores, ReadOnlySpan<int> labels, string metric)
    {
        var positives = Validate(scores, labels);
        var negatives = labels.Length - positives;
        if (positives == 0 || negatives == 0)
            throw new ArgumentException($"{metric} needs at least one anomaly (label 1) and one normal row (label 0); got {positives} and {negatives}", nameof(labels));
        var order = new int[scores.Length];
        for (var i = 0; i < order.Length; i++)
            order[i] = i;
        return (order, positives, negatives);
    }

    private static long Validate(ReadOnlySpan<double> scores, ReadOnlySpan<int> labels)
    {
        if (scores.Length != labels.Length)
            throw new ArgumentException($"{scores.Length} scores but {labels.Length} labels", nameof(labels));
        long positives = 0;
        for (var i = 0; i < scores.Length; i++)
        {
            if (double.IsNaN(scores[i]))
                throw new ArgumentException($"score {i} is NaN", nameof(scores));
            if (labels[i] is not (0 or 1))
                throw new ArgumentException($"label {i} is {labels[i]}; labels must be 0 (normal) or 1 (anomaly)", nameof(labels));
            positives += labels[i];
        }

        return positives;
    }
}
