using System.Runtime.InteropServices;

namespace AnomalyVae.Streaming;

/// <summary>
/// The calling thread's CPU time (CLOCK_THREAD_CPUTIME_ID, a vDSO call of tens of nanoseconds), for the per-stage
/// CPU split of the pipeline: wall time would count a stage's waits as its cost. Read per batch, never per event.
/// </summary>
internal static partial class ThreadCpu
{
    private const int ClockThreadCpuTime = 3;

    /// <summary>Nanoseconds of CPU this thread has used; 0 where the clock is not available.</summary>
    public static long Now()
    {
        if (!OperatingSystem.IsLinux())
            return 0;
        return ClockGetTime(ClockThreadCpuTime, out var time) == 0 ? (time.Seconds * 1_000_000_000L) + time.Nanoseconds : 0;
    }

    public static double Seconds(long nanoseconds) => nanoseconds / 1e9;

    [StructLayout(LayoutKind.Sequential)]
    private struct TimeSpec
    {
        public long Seconds;
        public long Nanoseconds;
    }

    [LibraryImport("libc", EntryPoint = "clock_gettime")]
    private static partial int ClockGetTime(int clock, out TimeSpec time);
}
