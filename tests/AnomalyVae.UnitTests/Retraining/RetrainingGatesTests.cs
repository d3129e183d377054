using AnomalyVae.Model;
using AnomalyVae.Retraining;

namespace AnomalyVae.UnitTests.Retraining;

public sealed class RetrainingGatesTests
{
    /// <summary>
    /// The scale correction turns −log N(z; 0, 1) of standardized values into −log N(x; center, scale²) of the raw
    /// value, whatever the standardization: two "models" that standardize differently then agree exactly on a
    /// Gaussian, and the one whose scale fits the data has the lower corrected NLL.
    /// </summary>
    [Theory]
    [InlineData(3.0, 0.0, 1.0)]
    [InlineData(3.0, 2.0, 10.0)]
    [InlineData(-7.5, 1.0, 0.05)]
    public void The_scale_correction_gives_the_negative_log_density_in_raw_units(double x, double center, double scale)
    {
        var schema = new FeatureSchema([FittedFeature.Numeric("v", center, scale), FittedFeature.Categorical("c", ["a", "b"])]);
        double z = (x - center) / scale;
        double standardNll = 0.5 * Math.Log(2 * Math.PI) + (0.5 * z * z);
        double categoricalNll = Math.Log(2);

        double corrected = RetrainingGates.ComparableNll(standardNll + categoricalNll, schema, [1, 1]);

        double rawNll = 0.5 * Math.Log(2 * Math.PI * scale * scale) + ((x - center) * (x - center) / (2 * scale * scale));
        Assert.Equal(rawNll + categoricalNll, corrected, 10);
    }

    [Fact]
    public void Missing_and_non_numeric_features_add_no_correction()
    {
        var schema = new FeatureSchema([FittedFeature.Numeric("a", 0, 100), FittedFeature.Numeric("b", 0, 5), FittedFeature.Binary("flag")]);
        Assert.Equal(2 + Math.Log(5), RetrainingGates.ComparableNll(2, schema, [0, 1, 1]), 12);
        Assert.Equal(2 + Math.Log(100) + Math.Log(5), RetrainingGates.ComparableNll(2, schema, [1, 1, 0]), 12);
        Assert.Throws<ArgumentException>(() => RetrainingGates.ComparableNll(2, schema, [1, 1]));
    }

    [Fact]
    public void A_tail_squash_adds_its_jacobian_from_the_raw_value()
    {
        // z = (7 − 1) / 2 = 3, k = 3: dz′/dz = (1 + 1)^(−½), so −log p_t gains log 2 + ½·log 2.
        var schema = new FeatureSchema([FittedFeature.Numeric("a", 1, 2, tailScale: 3)]);
        Assert.Equal(2 + Math.Log(2) + 0.5 * Math.Log(2), RetrainingGates.ComparableNll(2, schema, [1], [7]), 12);
        Assert.Throws<ArgumentException>(() => RetrainingGates.ComparableNll(2, schema, [1]));
    }

    [Fact]
    public void A_challenger_as_good_as_the_active_model_passes_every_gate()
    {
        var gates = new RetrainingGateOptions();
        var results = RetrainingGates.Evaluate(gates, 5000, Evaluation(flagRate: 0.012, nll: 10.2), Evaluation(flagRate: 0.011, nll: 10.0));
        Assert.Equal([RetrainingGates.TrainingRows, RetrainingGates.EvaluationRows, RetrainingGates.HeldOutNll, RetrainingGates.FlagRate, RetrainingGates.Recall, RetrainingGates.Precision],
            results.Select(r => r.Name));
        Assert.All(results, r => Assert.True(r.Passed, r.ToString()));
        Assert.Contains("+0.04 per feature", results[2].Detail); // (10.2 - 10.0) / 5 features
    }

    [Theory]
    [InlineData(999, 0.01, 10.0, RetrainingGates.TrainingRows)]
    [InlineData(5000, 0.01, 10.6, RetrainingGates.HeldOutNll)] // +0.12 nats per feature > 0.1
    [InlineData(5000, 0.01, double.NaN, RetrainingGates.HeldOutNll)]
    [InlineData(5000, 0.05, 10.0, RetrainingGates.FlagRate)] // > 3 × 1 % and > the active model's 2 %
    public void One_failing_gate_is_reported_by_name(int rows, double flagRate, double nll, string failing)
    {
        var results = RetrainingGates.Evaluate(new RetrainingGateOptions(), rows, Evaluation(flagRate, nll), Evaluation(flagRate: 0.02, nll: 10.0));
        Assert.Equal([failing], results.Where(r => !r.Passed).Select(r => r.Name));
        Assert.StartsWith("FAIL " + failing, results.Single(r => !r.Passed).ToString());
    }

    [Fact]
    public void A_flag_rate_above_the_limit_passes_when_it_is_no_worse_than_the_active_model()
    {
        var results = RetrainingGates.Evaluate(new RetrainingGateOptions(), 5000, Evaluation(flagRate: 0.05, nll: 10), Evaluation(flagRate: 0.30, nll: 20));
        Assert.True(results.Single(r => r.Name == RetrainingGates.FlagRate).Passed);
    }

    [Fact]
    public void Without_an_active_model_only_the_challenger_gates_apply()
    {
        var gates = new RetrainingGateOptions();
        var passing = RetrainingGates.Evaluate(gates, 5000, Evaluation(flagRate: 0.02, nll: 50), null);
        Assert.All(passing, r => Assert.True(r.Passed, r.ToString()));
        Assert.Contains("no active model", passing.Single(r => r.Name == RetrainingGates.HeldOutNll).Detail);
        var failing = RetrainingGates.Evaluate(gates, 5000, Evaluation(flagRate: 0.04, nll: 50), null);
        Assert.False(failing.Single(r => r.Name == RetrainingGates.FlagRate).Passed);
    }

    [Fact]
    public void Labels_gate_recall_and_precision_once_there_are_enough()
    {
        var gates = new RetrainingGateOptions { MinLabels = 20 };
        var active = Evaluation(0.01, 10, truePositives: 15, falsePositives: 10, precision: 0.6, recall: 0.9);
        var worseRecall = Evaluation(0.01, 10, truePositives: 15, falsePositives: 10, precision: 0.7, recall: 0.8);
        var results = RetrainingGates.Evaluate(gates, 5000, worseRecall, active);
        Assert.Equal([RetrainingGates.Recall], results.Where(r => !r.Passed).Select(r => r.Name));

        var worsePrecision = Evaluation(0.01, 10, truePositives: 15, falsePositives: 10, precision: 0.5, recall: 0.9);
        Assert.Equal([RetrainingGates.Precision], RetrainingGates.Evaluate(gates, 5000, worsePrecision, active).Where(r => !r.Passed).Select(r => r.Name));

        // 19 labels: not enough to judge, the same numbers pass as "not applicable".
        var few = Evaluation(0.01, 10, truePositives: 10, falsePositives: 9, precision: 0.1, recall: 0.1);
        var fewResults = RetrainingGates.Evaluate(gates, 5000, few, active);
        Assert.All(fewResults, r => Assert.True(r.Passed, r.ToString()));
        Assert.Contains("19 labelled anomalies", fewResults.Single(r => r.Name == RetrainingGates.Recall).Detail);
    }

    [Fact]
    public void Gate_options_are_validated_as_part_of_the_service_configuration()
    {
        Assert.Empty(new RetrainingGateOptions().Problems());
        var bad = new RetrainingGateOptions { MinTrainingRows = 1, MaxFlagRateFactor = 0.5, MaxRecallDrop = 2, MaxNllIncreasePerFeature = double.NaN };
        Assert.Equal(4, bad.Problems().Count);
        Assert.Contains(bad.Problems(), p => p.StartsWith("Retraining:Gates:MaxFlagRateFactor", StringComparison.Ordinal));
    }

    [Fact]
    public void Quantile_interpolates_linearly()
    {
        Assert.Equal(2.5, RetrainingGates.Quantile([1, 2, 3, 4], 0.5));
        Assert.Equal(4, RetrainingGates.Quantile([1, 2, 3, 4], 1));
        Assert.Equal(3.97, RetrainingGates.Quantile([1, 2, 3, 4], 0.99), 10);
    }

    [Fact]
    public void The_nll_gate_compares_means_without_each_models_highest_five_percent()
    {
        // A sharper challenger pays heavily on the few real anomalies (all-events mean 14.7 vs 7.4) but explains the
        // rest of the traffic better: it passes. One worse on the bulk fails although its all-events mean is lower.
        var sharp = Evaluation(0.012, 10, trimmedNll: -1.1) with { MeanNll = 14.7 };
        var vague = Evaluation(0.18, 10, trimmedNll: 4.6) with { MeanNll = 7.4 };
        var passed = RetrainingGates.Evaluate(new RetrainingGateOptions(), 5000, sharp, vague).Single(r => r.Name == RetrainingGates.HeldOutNll);
        Assert.True(passed.Passed, passed.ToString());
        Assert.Contains("all events: 14.7 vs 7.4", passed.Detail);
        var worseOnTheBulk = Evaluation(0.012, 10, trimmedNll: 5.2) with { MeanNll = 6 };
        Assert.False(RetrainingGates.Evaluate(new RetrainingGateOptions(), 5000, worseOnTheBulk, vague).Single(r => r.Name == RetrainingGates.HeldOutNll).Passed);
    }

    [Fact]
    public void The_trimmed_mean_leaves_out_the_highest_five_percent()
    {
        var twenty = Enumerable.Range(1, 20).Select(i => (double)i).Reverse().ToArray();
        Assert.Equal(10, RetrainingGates.TrimmedMean(twenty)); // 20 dropped: mean of 1..19
        var withOutliers = Enumerable.Repeat(1.0, 95).Concat(Enumerable.Repeat(1000.0, 5)).ToArray();
        Assert.Equal(1, RetrainingGates.TrimmedMean(withOutliers));
        Assert.Equal(2, RetrainingGates.TrimmedMean([1.0, 2, 3])); // fewer than 20 values: nothing dropped
        Assert.True(double.IsNaN(RetrainingGates.TrimmedMean([])));
        Assert.True(double.IsNaN(RetrainingGates.TrimmedMean([1.0, double.NaN, 3])));
    }

    private static ModelEvaluation Evaluation(double flagRate, double nll, int truePositives = 0, int falsePositives = 0, double? precision = null, double? recall = null,
        double? trimmedNll = null) =>
        new("v", 10, 0.01, 1000, flagRate, nll, nll, trimmedNll ?? nll, 5, truePositives, falsePositives, precision, recall);
}
