using AnomalyVae.Storage;

namespace AnomalyVae.Retraining;

/// <summary>
/// Section <c>Retraining</c>: what <c>serve</c> samples for retraining, how it watches for drift, and when it
/// retrains in-process. Sampling is part of every batch's transaction, so a replayed batch rewrites the same slots.
/// </summary>
public sealed class RetrainingOptions : DriftRule
{
    /// <summary>Slots of the training-sample reservoir (events scored as normal); 0 turns sampling off.</summary>
    public int SampleSize { get; set; } = 20_000;

    /// <summary>Probability that an event scored as normal is admitted to the reservoir. An entry survives about
    /// SampleSize admissions, so the sample covers roughly the last SampleSize / SampleRate normal events.</summary>
    public double SampleRate { get; set; } = 0.05;

    /// <summary>Slots of the recent-events ring (every scored event, held out from training); 0 turns it off.</summary>
    public int RecentSize { get; set; } = 5_000;

    /// <summary>Probability that a scored event is admitted to the recent-events ring.</summary>
    public double RecentRate { get; set; } = 0.01;

    /// <summary>Retrain in-process on this interval (e.g. "1.00:00:00"); unset = never (use a scheduler).</summary>
    public TimeSpan? Interval { get; set; }

    /// <summary>Retrain in-process when a detector is reported as drifting.</summary>
    public bool OnDrift { get; set; }

    /// <summary>After a drift-triggered retrain of a detector, no other one for this long (one drift episode, one
    /// retrain: the drift verdict looks back DriftWindow and stays "drift" for a while after a promotion).</summary>
    public TimeSpan DriftCooldown { get; set; } = TimeSpan.FromHours(6);

    /// <summary>How often in-process retraining reads the drift verdicts and looks for a due scheduled run. A drift
    /// verdict changes once per scoring_stats window, so checking more often than a window shows nothing new.</summary>
    public TimeSpan CheckInterval { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>When a challenger is promoted (section <c>Retraining:Gates</c>).</summary>
    public RetrainingGateOptions Gates { get; } = new();
}

/// <summary>
/// Section <c>Retraining:Gates</c>: what a retrained challenger must show on the recent held-out events before it
/// replaces the active model. Every gate must pass; the defaults are documented in docs/retraining.md.
/// </summary>
public sealed class RetrainingGateOptions
{
    /// <summary>Fewest training rows (sampled events plus labelled false positives) worth training on.</summary>
    public int MinTrainingRows { get; set; } = 1000;

    /// <summary>Fewest decodable recent events to evaluate on; below it no promotion (flag rates of a few hundred
    /// events cannot tell 1 % from 2 %).</summary>
    public int MinEvaluationRows { get; set; } = 200;

    /// <summary>Largest increase of the challenger's held-out negative log-likelihood over the active model's, in nats
    /// per feature (scale-corrected, so comparable across standardizations).</summary>
    public double MaxNllIncreasePerFeature { get; set; } = 0.1;

    /// <summary>The challenger's flag rate on the recent events must be at most this × its target false-positive rate,
    /// or at most the active model's flag rate.</summary>
    public double MaxFlagRateFactor { get; set; } = 3;

    /// <summary>Fewest labelled anomalies (latest label per anomaly) before precision and recall are compared.</summary>
    public int MinLabels { get; set; } = 20;

    /// <summary>Largest drop of recall on labelled true positives, challenger against active.</summary>
    public double MaxRecallDrop { get; set; } = 0.05;

    /// <summary>Largest drop of precision on labelled anomalies, challenger against active.</summary>
    public double MaxPrecisionDrop { get; set; } = 0.05;

    /// <summary>Problems with the values, one line each (empty when valid).</summary>
    public List<string> Problems()
    {
        var problems = new List<string>();
        if (MinTrainingRows < 2)
            problems.Add("Retraining:Gates:MinTrainingRows must be at least 2.");
        if (MinEvaluationRows < 1)
            problems.Add("Retraining:Gates:MinEvaluationRows must be at least 1.");
        if (!(MaxNllIncreasePerFeature >= 0) || !double.IsFinite(MaxNllIncreasePerFeature))
            problems.Add("Retraining:Gates:MaxNllIncreasePerFeature must be a finite number of nats, 0 or more.");
        if (!(MaxFlagRateFactor >= 1) || !double.IsFinite(MaxFlagRateFactor))
            problems.Add("Retraining:Gates:MaxFlagRateFactor must be a finite number, 1 or more.");
        if (MinLabels < 1)
            problems.Add("Retraining:Gates:MinLabels must be at least 1.");
        if (!(MaxRecallDrop >= 0 && MaxRecallDrop <= 1))
            problems.Add("Retraining:Gates:MaxRecallDrop must be between 0 and 1.");
        if (!(MaxPrecisionDrop >= 0 && MaxPrecisionDrop <= 1))
            problems.Add("Retraining:Gates:MaxPrecisionDrop must be between 0 and 1.");
        return problems;
    }
}
