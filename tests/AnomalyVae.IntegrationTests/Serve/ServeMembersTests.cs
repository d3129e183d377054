using System.Diagnostics;
using System.Globalization;
using AnomalyVae.IntegrationTests.Infrastructure;
using Confluent.Kafka;
using Npgsql;

namespace AnomalyVae.IntegrationTests.Serve;

/// <summary>
/// Real <c>anomalyvae serve</c> processes as group members: one of two is SIGKILLed mid-stream and the survivor
/// takes its partitions over; one is stopped by SIGTERM or SIGINT mid-stream, exits 0 having committed what it
/// read and left the group, and a restart continues where it stopped. Totals are exact in both.
/// </summary>
[Collection(InfrastructureCollection.Name)]
public sealed class ServeMembersTests(TestInfrastructure infrastructure, ServeFixture fixture) : IClassFixture<ServeFixture>
{
    // The fixture's Scoring:BatchSize.
    private const int BatchSize = 256;

    [Fact]
    public async Task Two_processes_in_one_group_one_killed_mid_stream_the_other_takes_over_and_totals_are_exact()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        var clock = Stopwatch.StartNew();
        await using var stream = await ServeStream.CreateAsync(infrastructure, "serve-members", partitions: 4, cts.Token);
        var (topic, deadLetters, database) = stream;
        var configuration = fixture.Configuration(infrastructure, topic, deadLetters, database, $"g-{Guid.NewGuid():N}");
        // A killed member stays in the group until its session times out: 6 s is the least Kafka 0.9 accepts
        // (group.min.session.timeout.ms), and librdkafka's heartbeat (3 s) stays below it.
        configuration["Kafka:Properties:session.timeout.ms"] = "6000";
        var configFile = await ServeProcess.WriteConfigAsync(fixture.Directory, configuration, cts.Token);
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        using var victim = ServeProcess.Start(configFile, "Information", ServeFixture.FreePort());
        using var survivor = ServeProcess.Start(configFile, "Information", ServeFixture.FreePort());

        // Both own partitions, together all four, before events flow.
        int[] victimPartitions, survivorPartitions;
        while (true)
        {
            Assert.False(victim.HasExited || survivor.HasExited, "a serve process exited at start-up:\n" + victim.Output + "\n" + survivor.Output);
            victimPartitions = await victim.PartitionsAsync(http, cts.Token) ?? [];
            survivorPartitions = await survivor.PartitionsAsync(http, cts.Token) ?? [];
            if (victimPartitions.Length > 0 && survivorPartitions.Length > 0 && victimPartitions.Concat(survivorPartitions).Order().SequenceEqual([0, 1, 2, 3]))
                break;
            await Task.Delay(100, cts.Token);
        }
        Console.WriteLine($"members: split {string.Join(",", victimPartitions)} | {string.Join(",", survivorPartitions)} after {clock.Elapsed.TotalSeconds:F1} s");

        // Kill while the events are still being produced, once both have committed something (every partition
        // has a stored offset). The events go out in paced chunks: a fast member could otherwise finish a burst
        // before the kill, and the victim would have nothing left to hand over.
        var produce = ProduceInChunksAsync(topic, ServeFixture.Events(60_000, seed: 51), chunks: 12, TimeSpan.FromMilliseconds(250), cts.Token);
        Dictionary<int, long> stored;
        while ((stored = await ServeProcess.StoredOffsetsAsync(database, cts.Token)).Count < 4 || stored.Values.Any(o => o == 0))
        {
            Assert.False(victim.HasExited || survivor.HasExited, "a serve process exited:\n" + victim.Output + "\n" + survivor.Output);
            await Task.Delay(20, cts.Token);
        }
        victim.Kill();
        await victim.WaitForExitAsync(cts.Token);
        var killedAt = Stopwatch.StartNew();
        stored = await ServeProcess.StoredOffsetsAsync(database, cts.Token);
        var events = await produce;
        var ends = EndOffsets(events);
        Console.WriteLine($"members: killed {string.Join(", ", victimPartitions.Select(p => $"{p}@{stored[p]}/{ends[p]}"))}; "
            + $"{stored.Values.Sum()} of {events.Count} events committed");
        Assert.True(victimPartitions.Any(p => stored[p] < ends[p]), "the victim had finished its partitions; produce more events");

        // The survivor takes the victim's partitions over once the victim's session times out.
        while (!(await survivor.PartitionsAsync(http, cts.Token) ?? []).SequenceEqual([0, 1, 2, 3]))
        {
            Assert.False(survivor.HasExited, "the survivor exited:\n" + survivor.Output);
            await Task.Delay(100, cts.Token);
        }
        Console.WriteLine($"members: the survivor owns all partitions {killedAt.Elapsed.TotalSeconds:F1} s after the kill");
        await ServeFixture.WaitForOffsetsAsync(database, topic, events, cts.Token);
        Console.WriteLine($"members: all offsets at the end {killedAt.Elapsed.TotalSeconds:F1} s after the kill");
        // It resumed the victim's partitions exactly at the offsets the victim had committed.
        Assert.Contains(Assignments(survivor.Output), a => victimPartitions.All(p => a.GetValueOrDefault(p) == stored[p]));

        await survivor.SignalAsync("TERM", cts.Token);
        await survivor.WaitForExitAsync(cts.Token);
        Assert.True(survivor.ExitCode == 0, survivor.Output);

        await AssertExactAsync(database, events, cts.Token);
        Console.WriteLine($"members: done in {clock.Elapsed.TotalSeconds:F1} s");
    }

    [Theory]
    [InlineData("TERM")]
    [InlineData("INT")]
    public async Task Signalled_mid_stream_it_commits_what_it_read_leaves_the_group_exits_zero_and_a_restart_continues_exactly(string signal)
    {
        // Generous: on a loaded machine producing, two serve runs and the checks take well over a minute.
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(6));
        var clock = Stopwatch.StartNew();
        await using var stream = await ServeStream.CreateAsync(infrastructure, "serve-signal", partitions: 2, cts.Token);
        var (topic, deadLetters, database) = stream;
        string group = $"g-{Guid.NewGuid():N}";
        var configuration = fixture.Configuration(infrastructure, topic, deadLetters, database, group);
        // A member that did not leave would stay listed in the group this long after its process ended.
        configuration["Kafka:Properties:session.timeout.ms"] = "30000";
        var configFile = await ServeProcess.WriteConfigAsync(fixture.Directory, configuration, cts.Token);

        // Mid-stream by construction: events keep arriving until the process has exited, however fast it
        // reads and however late the signal lands on a busy machine.
        using var stopProducing = CancellationTokenSource.CreateLinkedTokenSource(cts.Token);
        var produce = ProduceUntilStoppedAsync(topic, seed: 61, chunk: 2_000, TimeSpan.FromMilliseconds(50), stopProducing.Token);
        Dictionary<int, long> stored;
        List<ProducedEvent> events;
        using (var serve = ServeProcess.Start(configFile, "Information"))
        {
            // Signal once a committed prefix holds enough events that it holds anomalies (every 50th event).
            while ((stored = await ServeProcess.StoredOffsetsAsync(database, cts.Token)).Values.Sum() < 2_000)
            {
                Assert.False(serve.HasExited, "serve exited before committing anything:\n" + serve.Output);
                await Task.Delay(20, cts.Token);
            }
            var signalled = Stopwatch.StartNew();
            await serve.SignalAsync(signal, cts.Token);
            await serve.WaitForExitAsync(cts.Token);
            await stopProducing.CancelAsync();
            events = await produce;
            stored = await ServeProcess.StoredOffsetsAsync(database, cts.Token);
            Console.WriteLine($"SIG{signal}: exit {serve.ExitCode} {signalled.Elapsed.TotalSeconds:F1} s after the signal; "
                + $"{stored.Values.Sum()} of {events.Count} events committed");
            var output = serve.Output;
            Assert.True(serve.ExitCode == 0, output);
            Assert.Contains("Application is shutting down", output, StringComparison.Ordinal);
            Assert.Contains($"Detector sensors: left group {group}.sensors", output, StringComparison.Ordinal);
            Assert.DoesNotContain("could not commit the batches in memory", output, StringComparison.Ordinal);
            Assert.DoesNotContain("fail:", output, StringComparison.Ordinal);
            Assert.DoesNotContain("crit:", output, StringComparison.Ordinal);
        }
        var ends = EndOffsets(events);

        // It left the group: no member is listed although its session would not have timed out yet.
        using var admin = new AdminClientBuilder(infrastructure.ProducerConfig()).Build();
        Assert.Equal(0, Members(admin, $"{group}.sensors"));

        // What it committed is exactly what its offsets cover: every event below them scored or dead-lettered once.
        await AssertExactAsync(database, events, cts.Token, stored);

        // A restart resumes exactly there. With a batch timeout longer than the test, batches commit only when
        // full (BatchSize events), so the stream's last Tail events stay in memory: a few more events make that
        // tail non-empty. The signal comes once all full batches are committed; the tail must commit on the way out.
        const int Tail = 100;
        int extra = (int)(((Tail - (events.Count - stored.Values.Sum())) % BatchSize + BatchSize) % BatchSize);
        events.AddRange(await ServeFixture.ProduceAsync(infrastructure, topic, ServeFixture.Events(extra, seed: 62), cts.Token));
        ends = EndOffsets(events);
        using (var serve = ServeProcess.Start(configFile, "Information", overrides: "--Scoring:BatchTimeoutMs=60000"))
        {
            while ((await ServeProcess.StoredOffsetsAsync(database, cts.Token)).Values.Sum() < events.Count - Tail)
            {
                Assert.False(serve.HasExited, "serve exited:\n" + serve.Output);
                await Task.Delay(20, cts.Token);
            }
            Assert.Equal(events.Count - Tail, (await ServeProcess.StoredOffsetsAsync(database, cts.Token)).Values.Sum());
            // The group listing does see a member that has not left.
            Assert.Equal(1, Members(admin, $"{group}.sensors"));
            var signalled = Stopwatch.StartNew();
            await serve.SignalAsync(signal, cts.Token);
            await serve.WaitForExitAsync(cts.Token);
            Console.WriteLine($"SIG{signal}: restart exit {serve.ExitCode} {signalled.Elapsed.TotalSeconds:F1} s after the signal with {Tail} events in memory");
            var output = serve.Output;
            Assert.True(serve.ExitCode == 0, output);
            Assert.Contains(Assignments(output), a => stored.All(s => a.GetValueOrDefault(s.Key) == s.Value));
            Assert.Contains($"Detector sensors: left group {group}.sensors", output, StringComparison.Ordinal);
        }
        // The tail, held only in memory when the signal came, is committed.
        Assert.Equal(ends, await ServeProcess.StoredOffsetsAsync(database, cts.Token));
        await AssertExactAsync(database, events, cts.Token);
        Assert.Equal(0, Members(admin, $"{group}.sensors"));
        Console.WriteLine($"SIG{signal}: done in {clock.Elapsed.TotalSeconds:F1} s");
    }

    /// <summary>The worker's "assigned 0@123, 1@456" log lines: where each assignment started each partition.</summary>
    private static List<Dictionary<int, long>> Assignments(string output) =>
    [
        .. output.Split('\n').Select(l => l.IndexOf(": assigned ", StringComparison.Ordinal) is int at and >= 0 ? l[(at + 11)..] : null)
            .OfType<string>()
            .Select(a => a.Split(", ").Select(p => p.Split('@')).Where(p => p.Length == 2 && long.TryParse(p[1], CultureInfo.InvariantCulture, out _))
                .ToDictionary(p => int.Parse(p[0], CultureInfo.InvariantCulture), p => long.Parse(p[1], CultureInfo.InvariantCulture))),
    ];

    /// <summary>Members of <paramref name="group"/> as the coordinator lists them (Kafka 0.9 forgets a group whose
    /// last member left: not listed at all).</summary>
    private static int Members(IAdminClient admin, string group)
    {
        for (int attempt = 1; ; attempt++)
        {
            try
            {
                return admin.ListGroup(group, TimeSpan.FromSeconds(5))?.Members.Count ?? 0;
            }
            catch (KafkaException e) when (e.Error.Code == ErrorCode.Local_TimedOut && attempt < 3)
            {
                // librdkafka's group listing against 0.9 now and then gets no answer; ask again.
                Console.WriteLine($"list group {group}: {e.Error.Reason} (attempt {attempt})");
            }
        }
    }

    /// <summary>Produces <paramref name="events"/> in <paramref name="chunks"/> parts, <paramref name="pause"/> apart
    /// (partitions and offsets as one <see cref="ServeFixture.ProduceAsync"/> of them all would give).</summary>
    private async Task<List<ProducedEvent>> ProduceInChunksAsync(string topic, List<byte[]?> events, int chunks, TimeSpan pause,
        CancellationToken cancellationToken)
    {
        var produced = new List<ProducedEvent>(events.Count);
        int size = (events.Count + chunks - 1) / chunks;
        for (int start = 0; start < events.Count; start += size)
        {
            if (start > 0)
                await Task.Delay(pause, cancellationToken);
            produced.AddRange(await ServeFixture.ProduceAsync(infrastructure, topic, events.GetRange(start, Math.Min(size, events.Count - start)),
                cancellationToken));
        }
        return produced;
    }

    /// <summary>Produces chunks of events <paramref name="pause"/> apart until <paramref name="stop"/> is cancelled
    /// (at least one chunk), and returns all of them.</summary>
    private async Task<List<ProducedEvent>> ProduceUntilStoppedAsync(string topic, int seed, int chunk, TimeSpan pause, CancellationToken stop)
    {
        var produced = new List<ProducedEvent>();
        var all = ServeFixture.Events(400_000, seed);
        for (int start = 0; start + chunk <= all.Count && (start == 0 || !stop.IsCancellationRequested); start += chunk)
        {
            produced.AddRange(await ServeFixture.ProduceAsync(infrastructure, topic, all.GetRange(start, chunk), CancellationToken.None));
            try
            {
                await Task.Delay(pause, stop);
            }
            catch (OperationCanceledException)
            {
                break;
            }
        }
        return produced;
    }

    private static Dictionary<int, long> EndOffsets(List<ProducedEvent> events) =>
        events.GroupBy(e => e.Partition).ToDictionary(g => g.Key, g => g.Max(e => e.Offset) + 1);

    /// <summary>
    /// The stored state is exactly that of processing every event below <paramref name="upTo"/> (default: all of
    /// them) once: offsets there, anomaly rows those of direct scoring, statistics counting each event once.
    /// </summary>
    private async Task AssertExactAsync(string database, List<ProducedEvent> events, CancellationToken cancellationToken,
        Dictionary<int, long>? upTo = null)
    {
        upTo ??= EndOffsets(events);
        Assert.Equal(upTo, await ServeProcess.StoredOffsetsAsync(database, cancellationToken));
        var covered = events.Where(e => upTo.TryGetValue(e.Partition, out var next) && e.Offset < next).ToList();
        Assert.Equal(upTo.Values.Sum(), covered.Count);
        var expected = fixture.DirectScores(covered, out double threshold, out var undecodable);
        var flagged = expected.Where(e => e.Value > threshold).Select(e => e.Key).Order().ToList();
        Assert.NotEmpty(flagged);

        await ServeFixture.AssertRowsAndTotalsAsync(database, flagged, expected.Count, undecodable.Count, cancellationToken);
    }
}
