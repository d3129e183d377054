using System.Globalization;
using AnomalyVae.Model;

namespace AnomalyVae.Retraining;

/// <summary>
/// One model's numbers on the evaluation events: the recent held-out slice (Rows decodable by both models; FlagRate
/// above its own threshold) and the labelled anomalies (Precision, null when it flags none of them; Recall, null
/// without true-positive labels). NLLs are scale-corrected nats (<see cref="RetrainingGates.ComparableNll(double, AnomalyVae.Model.FeatureSchema, ReadOnlySpan{float})"/>);
/// TrimmedNll leaves out the model's own highest <see cref="RetrainingGates.NllTrimShare"/>, as held_out_nll compares.
/// </summary>
public sealed record ModelEvaluation(
    string Version,
    double Threshold,
    double TargetFalsePositiveRate,
    int Rows,
    double FlagRate,
    double MeanScore,
    double MeanNll,
    double TrimmedNll,
    int Features,
    int LabelledTruePositives,
    int LabelledFalsePositives,
    double? Precision,
    double? Recall);

/// <summary>One promotion gate's verdict, with the values behind it.</summary>
public sealed record GateResult(string Name, bool Passed, string Detail)
{
    public override string ToString() => $"{(Passed ? "pass" : "FAIL")} {Name}: {Detail}";
}

/// <summary>
/// The promotion gates of retraining and the likelihood comparison they rest on. A challenger is promoted only when
/// every gate passes.
/// </summary>
public static class RetrainingGates
{
    public const string TrainingRows = "training_rows";
    public const string EvaluationRows = "evaluation_rows";
    public const string HeldOutNll = "held_out_nll";
    public const string FlagRate = "flag_rate";
    public const string Recall = "recall";
    public const string Precision = "precision";

    /// <summary>
    /// Share of each model's highest per-event NLLs left out of the held_out_nll comparison. The recent events include
    /// real anomalies, on which a sharper model (a good challenger) costs far more nats than a vague one: 2 % of events
    /// at +100 nats each move a mean by 2 nats and would reject the better model. Anomalies are meant to be rare, well
    /// under 5 % of traffic, so dropping that share compares the models on the bulk of the traffic; a challenger bad on
    /// more than 5 % of it still fails here, and one bad on fewer events flags them, which the flag_rate gate sees.
    /// </summary>
    public const double NllTrimShare = 0.05;

    /// <summary>The mean of <paramref name="values"/> without the highest <see cref="NllTrimShare"/> of them (rounded
    /// down, so fewer than 20 values keep all); NaN when empty or when any value is NaN. Sorts in place.</summary>
    public static double TrimmedMean(Span<double> values)
    {
        if (values.IsEmpty)
            return double.NaN;
        foreach (var v in values)
        {
            if (double.IsNaN(v))
                return double.NaN;
        }
        values.Sort();
        int keep = values.Length - (int)Math.Floor(values.Length * NllTrimShare);
        double sum = 0;
        foreach (var v in values[..keep])
            sum += v;
        return sum / keep;
    }

    /// <summary>
    /// A model's score made comparable across models with different standardization: the score plus Σ log(scale_f)
    /// over the numeric features present in the row, the change of variables back to the data's units. Why, and what
    /// it leaves out: docs/retraining.md, the held_out_nll gate.
    /// </summary>
    public static double ComparableNll(double score, FeatureSchema schema, ReadOnlySpan<float> rowMask) =>
        ComparableNll(score, schema, rowMask, default);

    /// <summary>
    /// <see cref="ComparableNll(double, FeatureSchema, ReadOnlySpan{float})"/> for schemas with a tail squash
    /// z′ = k·asinh(z / k) (<see cref="FittedFeature.TailScale"/>) or a quantile map: their Jacobian depends on the value
    /// and on each model's fit, so it does not cancel; −log p_t gains −<see cref="FittedFeature.LogSlope"/> per such
    /// feature, which needs the row's raw values <paramref name="rowX"/>.
    /// </summary>
    public static double ComparableNll(double score, FeatureSchema schema, ReadOnlySpan<float> rowMask, ReadOnlySpan<float> rowX)
    {
        ArgumentNullException.ThrowIfNull(schema);
        if (rowMask.Length != schema.Count)
            throw new ArgumentException($"the mask row has {rowMask.Length} values; the schema has {schema.Count} features", nameof(rowMask));
        double correction = 0;
        for (int f = 0; f < schema.Count; f++)
        {
            var feature = schema.Features[f];
            if (feature.Kind != FeatureKind.Numeric || rowMask[f] == 0)
                continue;
            bool valueDependent = feature.TailScale > 0 || feature.QuantileMap is not null;
            if (valueDependent && rowX.Length != schema.Count)
                throw new ArgumentException("a schema with tail squashes or quantile maps needs the row's raw values", nameof(rowX));
            correction -= feature.LogSlope(valueDependent ? rowX[f] : 0f);
        }
        return score + correction;
    }

    /// <summary>Every gate for a challenger trained on <paramref name="trainingRows"/> rows; <paramref name="active"/>
    /// is null when the detector has no active model (the comparisons with it then pass as "not applicable").
    /// <paramref name="challenger"/> is null when too few rows were there to train on.</summary>
    public static IReadOnlyList<GateResult> Evaluate(RetrainingGateOptions gates, int trainingRows, ModelEvaluation? challenger, ModelEvaluation? active)
    {
        ArgumentNullException.ThrowIfNull(gates);
        var results = new List<GateResult>
        {
            new(TrainingRows, trainingRows >= gates.MinTrainingRows, $"{trainingRows} rows, at least {gates.MinTrainingRows} needed"),
        };
        if (challenger is null)
            return results;

        results.Add(new(EvaluationRows, challenger.Rows >= gates.MinEvaluationRows,
            $"{challenger.Rows} recent events, at least {gates.MinEvaluationRows} needed"));

        if (active is null)
        {
            results.Add(new(HeldOutNll, true, "not applicable: no active model"));
        }
        else
        {
            double perFeature = (challenger.TrimmedNll - active.TrimmedNll) / Math.Max(1, challenger.Features);
            // Written as "not greater" so that a NaN (a broken challenger) fails.
            bool passed = perFeature <= gates.MaxNllIncreasePerFeature;
            results.Add(new(HeldOutNll, passed,
                $"challenger {N(challenger.TrimmedNll)} vs active {N(active.TrimmedNll)} nats (means without each model's highest {P(NllTrimShare)}; "
                + $"all events: {N(challenger.MeanNll)} vs {N(active.MeanNll)}): {Signed(perFeature)} per feature, at most +{N(gates.MaxNllIncreasePerFeature)} allowed"));
        }

        double limit = gates.MaxFlagRateFactor * challenger.TargetFalsePositiveRate;
        bool underLimit = challenger.FlagRate <= limit;
        bool notWorse = active is not null && challenger.FlagRate <= active.FlagRate;
        results.Add(new(FlagRate, underLimit || notWorse,
            $"challenger {P(challenger.FlagRate)}, at most {P(limit)} ({N(gates.MaxFlagRateFactor)} × target {P(challenger.TargetFalsePositiveRate)})" +
            (active is null ? "" : $" or the active model's {P(active.FlagRate)}")));

        int labels = challenger.LabelledTruePositives + challenger.LabelledFalsePositives;
        if (active is null || labels < gates.MinLabels)
        {
            string why = active is null ? "no active model" : $"{labels} labelled anomalies, {gates.MinLabels} needed";
            results.Add(new(Recall, true, $"not applicable: {why}"));
            results.Add(new(Precision, true, $"not applicable: {why}"));
            return results;
        }
        results.Add(Compare(Recall, challenger.Recall, active.Recall, gates.MaxRecallDrop, "no true-positive labels"));
        results.Add(Compare(Precision, challenger.Precision, active.Precision, gates.MaxPrecisionDrop, "a model flags none of the labelled anomalies"));
        return results;
    }

    private static GateResult Compare(string name, double? challenger, double? active, double maxDrop, string undefined)
    {
        if (challenger is not { } c || active is not { } a)
            return new(name, true, $"not applicable: {undefined}");
        return new(name, c >= a - maxDrop, $"challenger {N(c)} vs active {N(a)}, at most {N(maxDrop)} lower allowed");
    }

    /// <summary>The type-7 (linear interpolation) quantile of ascending <paramref name="sorted"/> at level <paramref name="p"/>.</summary>
    public static double Quantile(ReadOnlySpan<double> sorted, double p)
    {
        if (sorted.IsEmpty)
            throw new ArgumentException("a quantile needs at least one value", nameof(sorted));
        double h = (sorted.Length - 1) * Math.Clamp(p, 0, 1);
        int low = (int)Math.Floor(h);
        int high = Math.Min(low + 1, sorted.Length - 1);
        return sorted[low] + ((h - low) * (sorted[high] - sorted[low]));
    }

    internal static string N(double value) => value.ToString("G4", CultureInfo.InvariantCulture);

    internal static string P(double value) => value.ToString("0.00%", CultureInfo.InvariantCulture);

    private static string Signed(double value) => (value >= 0 ? "+" : "") + N(value);
}
