namespace AnomalyVae.Storage;

/// <summary>
/// How a detector's score drift is judged: the keys DriftThreshold, DriftWindow and DriftMinEvents of section
/// <c>Retraining</c>, read by serve, the API and retraining alike (one configuration file serves every process).
/// </summary>
public class DriftRule
{
    /// <summary>Population stability index of the recent score distribution against the calibration bins above
    /// which a detector is reported as drifting (0.1: small shift; 0.25: large).</summary>
    public double DriftThreshold { get; set; } = DefaultDriftThreshold;

    /// <summary>Default of <see cref="DriftThreshold"/>.</summary>
    public const double DefaultDriftThreshold = 0.2;

    /// <summary>How far back drift looks (scoring_stats windows of the active model that started within it), and which training-sample
    /// rows a drift-triggered retrain trains on (those sampled within it, when there are at least Gates:MinTrainingRows).</summary>
    public TimeSpan DriftWindow { get; set; } = TimeSpan.FromHours(1);

    /// <summary>Fewest events in the drift window for a verdict; below it the status is "unknown".</summary>
    public int DriftMinEvents { get; set; } = 500;

    /// <summary>What is wrong with these settings, one line per problem (none when valid).</summary>
    public IEnumerable<string> DriftProblems()
    {
        if (!(DriftThreshold > 0) || !double.IsFinite(DriftThreshold))
            yield return "Retraining:DriftThreshold must be a positive number.";
        if (DriftWindow <= TimeSpan.Zero)
            yield return "Retraining:DriftWindow must be positive (e.g. 01:00:00).";
        if (DriftMinEvents < 1)
            yield return "Retraining:DriftMinEvents must be at least 1.";
    }
}
