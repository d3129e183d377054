using AnomalyVae.Storage;

namespace AnomalyVae.Streaming;

/// <summary>
/// One batch commit's alerts: the hook the store runs before COMMIT (on every attempt) and the hand-over to Alertmanager
/// once the commit succeeded. An attempt whose COMMIT went through although its acknowledgement was lost makes the retry
/// see no transition (its anomalies are already stored): the transitions of the last attempt that had some are kept.
/// </summary>
internal sealed class CommitAlerts(DetectorAlerts alerts, BatchRecord record)
{
    private IReadOnlyList<IncidentTransition> _transitions = [];

    public Task BeforeCommitAsync(IReadOnlyList<IncidentTransition> transitions, CancellationToken cancellationToken)
    {
        if (transitions.Count > 0)
            _transitions = transitions;
        return alerts.BeforeCommitAsync(record, transitions, cancellationToken);
    }

    public void Committed() => alerts.Committed(_transitions);
}
