namespace AnomalyVae.UnitTests;

/// <summary>Managed bytes a piece of code allocates on the calling thread.</summary>
internal static class Allocations
{
    /// <summary>
    /// The fewest bytes <paramref name="run"/> allocated over <paramref name="windows"/> separate measurements. An
    /// allocation per call shows in every window; a one-off of the runtime (a tier-up, a lazily created cache) lands
    /// in one of them, so the minimum is 0 for code that truly allocates nothing.
    /// </summary>
    public static long Fewest(Action run, int windows = 3)
    {
        long fewest = long.MaxValue;
        for (int w = 0; w < windows && fewest > 0; w++)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            run();
            fewest = Math.Min(fewest, GC.GetAllocatedBytesForCurrentThread() - before);
        }
        return fewest;
    }
}
