using AnomalyVae.Storage;

namespace AnomalyVae.UnitTests.Storage;

public class IncidentRulesTests
{
    private static readonly DateTime T0 = new(2026, 1, 1, 0, 0, 0, DateTimeKind.Utc);
    private static readonly TimeSpan Gap = TimeSpan.FromMinutes(5);
    private static readonly Dictionary<string, Incident> None = [];

    private static IncidentAnomaly A(long id, string entity, double minutes, double score = 10, double pValue = 0.01, params (string, double)[] features) =>
        new(id, entity, T0.AddMinutes(minutes), score, pValue, [.. features.Select(f => new KeyValuePair<string, double>(f.Item1, f.Item2))]);

    [Fact]
    public void Anomalies_of_one_entity_within_the_gap_form_one_open_incident_with_count_peak_and_summed_features()
    {
        var changes = IncidentRules.Apply(None,
            [A(1, "m1", 0, 10, 0.01, ("temp", 5), ("rpm", 1)), A(2, "m1", 4, 30, 0.001, ("temp", 7), ("rpm", 9)), A(3, "m1", 8.5, 20, 0.002, ("rpm", 3))], Gap);

        var incident = Assert.Single(changes.Incidents);
        Assert.True(incident.IsNew);
        Assert.Equal(("m1", 1L, 3L), (incident.Entity, incident.FirstAnomalyId, incident.Count));
        Assert.Equal((T0, T0.AddMinutes(8.5)), (incident.FirstAt, incident.LastAt));
        Assert.Equal((30.0, 2L, 0.001), (incident.PeakScore, incident.PeakAnomalyId, incident.MinPValue));
        Assert.Equal([new("rpm", 13.0), new("temp", 12.0)], incident.TopFeatures(2).ToArray());
        Assert.Null(incident.ClosedAt);
        Assert.All(changes.Assignments, a => Assert.Same(incident, a.Incident));
        Assert.Equal([1L, 2L, 3L], changes.Assignments.Select(a => a.Anomaly.AnomalyId));
    }

    [Fact]
    public void A_pause_longer_than_the_gap_closes_the_incident_at_last_plus_gap_and_opens_a_new_one()
    {
        var changes = IncidentRules.Apply(None, [A(1, "m1", 0), A(2, "m1", 2), A(3, "m1", 7.01)], Gap);

        Assert.Equal(2, changes.Incidents.Count);
        var (first, second) = (changes.Incidents[0], changes.Incidents[1]);
        Assert.Equal(T0.AddMinutes(7), first.ClosedAt);
        Assert.Equal(2, first.Count);
        Assert.Equal((3L, 1L, (DateTime?)null), (second.FirstAnomalyId, second.Count, second.ClosedAt));
    }

    [Fact]
    public void Exactly_the_gap_apart_still_joins()
    {
        var changes = IncidentRules.Apply(None, [A(1, "m1", 0), A(2, "m1", 5)], Gap);
        Assert.Equal(2, Assert.Single(changes.Incidents).Count);
    }

    [Fact]
    public void Entities_are_grouped_separately_and_order_in_the_batch_does_not_matter()
    {
        IncidentAnomaly[] anomalies = [A(4, "m2", 3), A(1, "m1", 0), A(3, "m1", 2), A(2, "m2", 1)];
        var changes = IncidentRules.Apply(None, anomalies, Gap);
        var reversed = IncidentRules.Apply(None, anomalies.Reverse(), Gap);

        Assert.Equal(["m1", "m2"], changes.Incidents.Select(i => i.Entity));
        Assert.Equal([(1L, 2L), (2L, 2L)], changes.Incidents.Select(i => (i.FirstAnomalyId, i.Count)));
        Assert.Equal(changes.Incidents.Select(i => (i.Entity, i.FirstAnomalyId, i.Count)), reversed.Incidents.Select(i => (i.Entity, i.FirstAnomalyId, i.Count)));
    }

    [Fact]
    public void A_loaded_open_incident_is_extended_and_keeps_its_id_and_earlier_totals()
    {
        var open = new Incident
        {
            Id = 42,
            Entity = "m1",
            FirstAnomalyId = 7,
            FirstAt = T0,
            LastAt = T0.AddMinutes(1),
            Count = 5,
            PeakScore = 50,
            PeakAnomalyId = 9,
            MinPValue = 0.0001,
            FeatureScores = new(StringComparer.Ordinal) { ["temp"] = 100 },
        };
        var changes = IncidentRules.Apply(new Dictionary<string, Incident> { ["m1"] = open },
            [A(20, "m1", 3, 40, 0.01, ("temp", 10), ("rpm", 200))], Gap);

        var incident = Assert.Single(changes.Incidents);
        Assert.Same(open, incident);
        Assert.Equal((42L, 6L, 50.0, 9L, 0.0001), (incident.Id, incident.Count, incident.PeakScore, incident.PeakAnomalyId, incident.MinPValue));
        Assert.Equal(T0.AddMinutes(3), incident.LastAt);
        Assert.Equal("rpm", incident.TopFeatures(1).Single().Key);
        Assert.Equal(110, incident.FeatureScores["temp"]);
    }

    [Fact]
    public void A_late_anomaly_earlier_than_the_incident_joins_and_moves_its_start()
    {
        var open = new Incident { Id = 1, Entity = "m1", FirstAnomalyId = 1, FirstAt = T0.AddMinutes(10), LastAt = T0.AddMinutes(12), Count = 2, PeakScore = 5 };
        var changes = IncidentRules.Apply(new Dictionary<string, Incident> { ["m1"] = open }, [A(9, "m1", 4)], Gap);

        Assert.Same(open, Assert.Single(changes.Incidents));
        Assert.Equal((T0.AddMinutes(4), T0.AddMinutes(12), 3L), (open.FirstAt, open.LastAt, open.Count));
    }

    [Fact]
    public void No_anomalies_change_nothing_and_a_gap_of_zero_is_refused()
    {
        var changes = IncidentRules.Apply(None, [], Gap);
        Assert.Empty(changes.Incidents);
        Assert.Throws<ArgumentOutOfRangeException>(() => IncidentRules.Apply(None, [], TimeSpan.Zero));
    }

    [Fact]
    public void Features_reads_a_contributions_column_and_leaves_null_scores_out()
    {
        var features = IncidentStore.Features("""[{"feature":"a","score":2.5},{"feature":"b","score":null},{"feature":"c","score":1}]""");
        Assert.Equal([new("a", 2.5), new("c", 1.0)], features);
    }
}
