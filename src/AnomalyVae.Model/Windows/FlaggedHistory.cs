namespace AnomalyVae.Model;

/// <summary>
/// The rule of <see cref="WindowDefinition.MaskFlaggedHistory"/>, shared by the CSV path (<see cref="FeatureWindows"/>)
/// and serve: a history step whose event was flagged is missing (mask 0 for all its features, value 0), as Donut
/// treats known anomalies. An event is flagged when its score is above the calibrated threshold. Because an
/// event's window depends on its predecessors' flags, an entity's events are scored in order: within a batch, in
/// waves by per-entity occurrence (every entity's first event, then every entity's second, …), so the score is a
/// function of the entity's event sequence and never of where batches start and end.
/// </summary>
public static class FlaggedHistory
{
    /// <summary>Whether an event with <paramref name="score"/> is flagged (the same comparison serve flags with).</summary>
    public static bool IsFlagged(double score, double threshold) => score > threshold;

    /// <summary>
    /// Of an event whose window holds flagged steps, scored with the whole window and again with those steps
    /// masked: whether the masked score is kept. The lower one is: a reading spoiled only by a flagged neighbour
    /// scores normally once that neighbour is missing, while a window with gaps (which a model reconstructs less
    /// surely, so scores higher) never raises a score, so flags cannot cascade along an entity.
    /// </summary>
    public static bool PrefersMasked(double whole, double masked) => masked < whole;

    /// <summary>
    /// Masks the flagged history steps of one window. <paramref name="values"/> and <paramref name="mask"/> are the
    /// window, [W, F] step-major, the event itself at step W−1; <paramref name="flagged"/>[s] is whether the event at
    /// step s (s &lt; W−1, oldest first) was flagged. The event's own step is never masked.
    /// </summary>
    public static void Apply(Span<float> values, Span<float> mask, ReadOnlySpan<bool> flagged, int features)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(features, 1);
        int steps = mask.Length / features;
        if (values.Length != mask.Length || steps * features != mask.Length)
            throw new ArgumentException($"A window of {features} features per step needs values and mask of equal length, a multiple of {features}.");
        if (flagged.Length != steps - 1)
            throw new ArgumentException($"A window of {steps} steps has {steps - 1} history flags; {flagged.Length} were given.", nameof(flagged));
        for (int s = 0; s < flagged.Length; s++)
        {
            if (!flagged[s])
                continue;
            values.Slice(s * features, features).Clear();
            mask.Slice(s * features, features).Clear();
        }
    }
}
