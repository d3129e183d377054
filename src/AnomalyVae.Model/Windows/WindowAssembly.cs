namespace AnomalyVae.Model;

/// <summary>
/// An entity's history as a window sees it: its events newest first, the event being scored at <c>back</c> 0.
/// <see cref="FeatureWindows"/> walks a CSV table's rows; serve walks the per-entity state it keeps.
/// </summary>
public interface IWindowSteps
{
    /// <summary>The values and mask of the event <paramref name="back"/> events before the newest (0: the event
    /// itself), [F] each; false when the entity has no such event. Called with back = 0, 1, 2, … in order.</summary>
    bool TryStep(int back, out ReadOnlySpan<float> values, out ReadOnlySpan<float> mask);
}

/// <summary>
/// The one definition of a window tensor, shared by CSV scoring (<see cref="FeatureWindows"/>) and serve, so both
/// give an event the same score: [W, F] step-major, the event itself at step W−1, its predecessors before it, and
/// steps the entity has no event for (its first events) with value 0 and mask 0. Missing values keep mask 0.
/// </summary>
public static class WindowAssembly
{
    /// <summary>Writes one window into <paramref name="x"/> and <paramref name="mask"/> ([W·F] each).</summary>
    public static void Fill<TSteps>(ref TSteps steps, int w, int features, Span<float> x, Span<float> mask)
        where TSteps : IWindowSteps, allows ref struct
    {
        if (x.Length < w * features || mask.Length < w * features)
            throw new ArgumentException($"a window of {w} steps × {features} features needs {w * features} values");
        int back = 0;
        for (; back < w; back++)
        {
            if (!steps.TryStep(back, out var values, out var present))
                break;
            int step = w - 1 - back;
            values.CopyTo(x.Slice(step * features, features));
            present.CopyTo(mask.Slice(step * features, features));
        }
        // Steps before the entity's first event: nothing there.
        int empty = (w - back) * features;
        x[..empty].Clear();
        mask[..empty].Clear();
    }
}
