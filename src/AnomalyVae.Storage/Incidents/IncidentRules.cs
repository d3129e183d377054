namespace AnomalyVae.Storage;

/// <summary>One newly stored anomaly as incident grouping sees it.</summary>
/// <param name="AnomalyId">Its row id.</param>
/// <param name="Entity">Its entity (anomalies without one are not grouped).</param>
/// <param name="Time">Its event time, else its detection time (UTC).</param>
/// <param name="Score">Its anomaly score.</param>
/// <param name="PValue">Its p-value.</param>
/// <param name="Features">Its per-feature scores (null scores left out).</param>
public sealed record IncidentAnomaly(long AnomalyId, string Entity, DateTime Time, double Score, double PValue,
    IReadOnlyList<KeyValuePair<string, double>> Features);

/// <summary>
/// An incident while a batch is grouped: loaded open from the database (<see cref="Id"/> &gt; 0) or opened by this batch
/// (<see cref="Id"/> 0 until stored). Mutable: <see cref="IncidentRules"/> extends and closes it.
/// </summary>
public sealed class Incident
{
    public long Id { get; init; }

    public required string Entity { get; init; }

    /// <summary>The anomaly that opened it (its natural key).</summary>
    public long FirstAnomalyId { get; init; }

    public DateTime FirstAt { get; set; }

    public DateTime LastAt { get; set; }

    public long Count { get; set; }

    public double PeakScore { get; set; }

    public double MinPValue { get; set; } = 1;

    public long PeakAnomalyId { get; set; }

    /// <summary>Per-feature scores summed over its anomalies.</summary>
    public Dictionary<string, double> FeatureScores { get; init; } = new(StringComparer.Ordinal);

    public DateTime? ClosedAt { get; set; }

    /// <summary>Changed by this batch (extended or closed), so it must be written.</summary>
    public bool Changed { get; set; }

    public bool IsNew => Id == 0;

    /// <summary>The <paramref name="count"/> features with the largest summed scores, largest first.</summary>
    public IEnumerable<KeyValuePair<string, double>> TopFeatures(int count) =>
        FeatureScores.OrderByDescending(f => f.Value).ThenBy(f => f.Key, StringComparer.Ordinal).Take(count);

    internal void Add(IncidentAnomaly anomaly)
    {
        if (Count == 0 || anomaly.Time < FirstAt)
            FirstAt = anomaly.Time;
        if (Count == 0 || anomaly.Time > LastAt)
            LastAt = anomaly.Time;
        if (Count == 0 || anomaly.Score > PeakScore)
        {
            PeakScore = anomaly.Score;
            PeakAnomalyId = anomaly.AnomalyId;
        }
        MinPValue = Math.Min(MinPValue, anomaly.PValue);
        foreach (var (feature, score) in anomaly.Features)
            FeatureScores[feature] = FeatureScores.GetValueOrDefault(feature) + score;
        Count++;
        Changed = true;
    }
}

/// <summary>What grouping one batch's anomalies decided.</summary>
/// <param name="Incidents">Every incident the batch changed: loaded ones extended or closed, and new ones.</param>
/// <param name="Assignments">Each grouped anomaly and the incident it joined.</param>
public sealed record IncidentChanges(IReadOnlyList<Incident> Incidents, IReadOnlyList<(IncidentAnomaly Anomaly, Incident Incident)> Assignments);

/// <summary>
/// The grouping rules, pure (no database): an anomaly joins its entity's open incident when it comes at most
/// <c>gap</c> after the incident's last anomaly (or earlier: late events join too); otherwise that incident closes at
/// its last anomaly + gap and the anomaly opens a new one. Anomalies are taken in time order (then id), so the outcome
/// does not depend on how a batch's partitions interleave. (Closing incidents that went quiet is the database's
/// sweep after each batch, by the detector's clock: see <see cref="IncidentStore"/>.)
/// </summary>
public static class IncidentRules
{
    /// <param name="open">The open incidents of the batch's entities, by entity (loaded under a row lock).</param>
    /// <param name="anomalies">The anomalies this batch stored (not those a replay found already stored).</param>
    /// <param name="gap">The detector's incident gap (positive).</param>
    public static IncidentChanges Apply(IReadOnlyDictionary<string, Incident> open, IEnumerable<IncidentAnomaly> anomalies, TimeSpan gap)
    {
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(gap, TimeSpan.Zero);
        var current = new Dictionary<string, Incident>(open, StringComparer.Ordinal);
        var changed = new List<Incident>();
        var tracked = new HashSet<Incident>(ReferenceEqualityComparer.Instance);
        var assignments = new List<(IncidentAnomaly, Incident)>();
        foreach (var anomaly in anomalies.OrderBy(a => a.Time).ThenBy(a => a.AnomalyId))
        {
            if (!current.TryGetValue(anomaly.Entity, out var incident) || anomaly.Time - incident.LastAt > gap)
            {
                if (incident is not null)
                {
                    incident.ClosedAt = incident.LastAt + gap;
                    incident.Changed = true;
                    Track(changed, tracked, incident);
                }
                incident = new Incident { Entity = anomaly.Entity, FirstAnomalyId = anomaly.AnomalyId };
                current[anomaly.Entity] = incident;
            }
            incident.Add(anomaly);
            Track(changed, tracked, incident);
            assignments.Add((anomaly, incident));
        }
        return new IncidentChanges(changed, assignments);
    }

    private static void Track(List<Incident> changed, HashSet<Incident> tracked, Incident incident)
    {
        if (tracked.Add(incident))
            changed.Add(incident);
    }
}
