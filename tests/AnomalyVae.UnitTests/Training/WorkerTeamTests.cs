using AnomalyVae.Training.Engine;

namespace AnomalyVae.UnitTests.Training;

public sealed class WorkerTeamTests
{
    /// <summary>Counts how often each part ran; a run must execute every part exactly once, and only while it lasts.</summary>
    private sealed class CountingWork : IPartitionedWork
    {
        public readonly int[] Counts = new int[8];

        public void Execute(int part, int worker) => Interlocked.Increment(ref Counts[part]);
    }

    [Fact]
    public void Every_part_runs_exactly_once_per_run_even_when_runs_follow_back_to_back()
    {
        // Training alternates runs with different part counts (batch chunks, then Adam slices) microseconds apart.
        // A worker still leaving one run must not claim a part of the next with a stale part count, which ran a
        // part twice or let Run return before a part was finished (the trainer's timing-dependent weights).
        using var team = new WorkerTeam(2);
        var works = new[] { new CountingWork(), new CountingWork(), new CountingWork() };
        int[] partCounts = [2, 1, 3];
        int failures = 0;
        // Before the fix about 1 run in 1,000 to 300,000 failed (Release / Debug), so run for a few seconds.
        var clock = System.Diagnostics.Stopwatch.StartNew();
        for (int run = 0; run < 20_000_000 && clock.ElapsedMilliseconds < 3000; run++)
        {
            var work = works[run % 3];
            int parts = partCounts[run % 3];
            Array.Clear(work.Counts);
            team.Run(work, parts);
            for (int p = 0; p < work.Counts.Length; p++)
            {
                if (Volatile.Read(ref work.Counts[p]) != (p < parts ? 1 : 0))
                    failures++;
            }
        }

        Assert.Equal(0, failures);
    }
}
