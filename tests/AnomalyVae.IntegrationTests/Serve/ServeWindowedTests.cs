using System.Diagnostics;
using System.Globalization;
using AnomalyVae.IntegrationTests.Infrastructure;
using Npgsql;

namespace AnomalyVae.IntegrationTests.Serve;

/// <summary>
/// Exactly-once for a windowed detector's per-entity state, with real <c>anomalyvae serve</c> processes: SIGKILLed
/// five times at random points and restarted, or two members of one group taking partitions from each other
/// mid-stream, the anomaly rows and their scores are those of one uninterrupted run (CSV-style scoring of each
/// partition's events in order, <see cref="ServeFixture.DirectWindowedScores"/>). The threshold is set at the
/// median score so that half of all events are stored with their score: an event scored with a wrong or missing
/// history would show.
/// </summary>
[Collection(InfrastructureCollection.Name)]
public sealed class ServeWindowedTests(TestInfrastructure infrastructure, ServeFixture fixture) : IClassFixture<ServeFixture>
{
    private const int Kills = 5;

    [Fact]
    public async Task Killed_five_times_mid_stream_a_windowed_detector_stores_the_rows_and_scores_of_an_uninterrupted_run()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(5));
        await using var stream = await ServeStream.CreateAsync(infrastructure, "serve-window-crash", partitions: 4, cts.Token);
        var (topic, deadLetters, database) = stream;
        var events = await ServeFixture.ProduceAsync(infrastructure, topic, ServeFixture.Events(60_000, seed: 43), cts.Token);
        var expected = fixture.DirectWindowedScores(events, out _, out var undecodable);
        double threshold = Median(expected.Values);
        var configuration = Configuration(topic, deadLetters, database, threshold);
        // A killed member stays in the group until its session times out; keep that short.
        configuration["Kafka:Properties:session.timeout.ms"] = "6000";
        var configFile = await ServeProcess.WriteConfigAsync(fixture.Directory, configuration, cts.Token);

        await ServeProcess.KillMidStreamAsync(configFile, database, topic, events, Kills, seed: 44, "windowed kill", cts.Token);

        await ServeFixture.AssertScoresAsync(database, expected, threshold, cts.Token);
        var flagged = expected.Where(e => e.Value > threshold).Select(e => e.Key).Order().ToList();
        await ServeFixture.AssertRowsAndTotalsAsync(database, flagged, expected.Count, undecodable.Count, cts.Token);
        await AssertStateAsync(database, events, expected.Keys, cts.Token);
    }

    [Fact]
    public async Task A_member_joining_and_one_leaving_mid_stream_restore_each_partitions_state_before_scoring_it()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(4));
        var clock = Stopwatch.StartNew();
        await using var stream = await ServeStream.CreateAsync(infrastructure, "serve-window-members", partitions: 4, cts.Token);
        var (topic, deadLetters, database) = stream;
        var all = ServeFixture.Events(48_000, seed: 53);
        var expected = fixture.DirectWindowedScores(
            [.. all.Select((p, i) => new ProducedEvent(i % 4, i / 4, p))], out _, out _); // for the threshold only
        double threshold = Median(expected.Values);
        var configuration = Configuration(topic, deadLetters, database, threshold);
        configuration["Kafka:Properties:session.timeout.ms"] = "6000";
        var configFile = await ServeProcess.WriteConfigAsync(fixture.Directory, configuration, cts.Token);
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };

        // The first member alone, with a third of the events: it owns and advances every partition's state.
        var events = await ServeFixture.ProduceAsync(infrastructure, topic, all.GetRange(0, 16_000), cts.Token);
        using var first = ServeProcess.Start(configFile, "Information", ServeFixture.FreePort());
        await ServeFixture.WaitForOffsetsAsync(database, topic, events, cts.Token);

        // A second member joins: the partitions are split, and each member reads the state of those it is
        // newly given before scoring their next event (the joiner's are all new to it).
        using var second = ServeProcess.Start(configFile, "Information", ServeFixture.FreePort());
        while (true)
        {
            Assert.False(first.HasExited || second.HasExited, "a serve process exited:\n" + first.Output + "\n" + second.Output);
            var a = await first.PartitionsAsync(http, cts.Token) ?? [];
            var b = await second.PartitionsAsync(http, cts.Token) ?? [];
            if (a.Length > 0 && b.Length > 0 && a.Concat(b).Order().SequenceEqual([0, 1, 2, 3]))
                break;
            await Task.Delay(100, cts.Token);
        }
        Console.WriteLine($"windowed members: split after {clock.Elapsed.TotalSeconds:F1} s");
        events.AddRange(await ServeFixture.ProduceAsync(infrastructure, topic, all.GetRange(16_000, 16_000), cts.Token));
        await ServeFixture.WaitForOffsetsAsync(database, topic, events, cts.Token);

        // The first leaves (SIGTERM: commits, leaves the group): the second is given its partitions and reads their state.
        await first.SignalAsync("TERM", cts.Token);
        await first.WaitForExitAsync(cts.Token);
        Assert.True(first.ExitCode == 0, first.Output);
        while (!(await second.PartitionsAsync(http, cts.Token) ?? []).SequenceEqual([0, 1, 2, 3]))
        {
            Assert.False(second.HasExited, "the second member exited:\n" + second.Output);
            await Task.Delay(100, cts.Token);
        }
        events.AddRange(await ServeFixture.ProduceAsync(infrastructure, topic, all.GetRange(32_000, 16_000), cts.Token));
        await ServeFixture.WaitForOffsetsAsync(database, topic, events, cts.Token);
        await second.SignalAsync("TERM", cts.Token);
        await second.WaitForExitAsync(cts.Token);
        Assert.True(second.ExitCode == 0, second.Output);
        Console.WriteLine($"windowed members: done in {clock.Elapsed.TotalSeconds:F1} s");

        // Each member read state when partitions were assigned, and the joiner found stored entities there.
        Assert.Contains("read the window state of partitions", second.Output);
        Assert.Matches(@"read the window state of partitions [0-9, ]+: [1-9][0-9]* entities", second.Output);
        expected = fixture.DirectWindowedScores(events, out _, out var undecodable);
        await ServeFixture.AssertScoresAsync(database, expected, threshold, cts.Token);
        var flagged = expected.Where(e => e.Value > threshold).Select(e => e.Key).Order().ToList();
        await ServeFixture.AssertRowsAndTotalsAsync(database, flagged, expected.Count, undecodable.Count, cts.Token);
        await AssertStateAsync(database, events, expected.Keys, cts.Token);
    }

    private Dictionary<string, string?> Configuration(string topic, string deadLetters, string database, double threshold)
    {
        var configuration = fixture.Configuration(infrastructure, topic, deadLetters, database, $"g-{Guid.NewGuid():N}", model: fixture.WindowedModelPath);
        configuration["Detectors:0:Threshold"] = threshold.ToString("R", CultureInfo.InvariantCulture);
        // Half of the events are stored: incidents would only add work here.
        configuration["Detectors:0:IncidentGap"] = "00:00:00";
        return configuration;
    }

    /// <summary>window_state holds one row per (partition, entity), at the entity's last scored offset.</summary>
    private static async Task AssertStateAsync(string database, List<ProducedEvent> events, IEnumerable<(int Partition, long Offset)> scored,
        CancellationToken cancellationToken)
    {
        var byKey = events.ToDictionary(e => (e.Partition, e.Offset));
        var expected = scored.GroupBy(k => (k.Partition, Entity: ServeFixture.Entity(byKey[k].Payload!)))
            .ToDictionary(g => $"{g.Key.Partition}/{g.Key.Entity}", g => g.Max(k => k.Offset));
        var stored = new Dictionary<string, long>();
        await using var connection = new NpgsqlConnection(database);
        await connection.OpenAsync(cancellationToken);
        await using var command = new NpgsqlCommand("SELECT \"partition\" || '/' || entity, last_offset FROM window_state WHERE detector = 'sensors'", connection);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
            stored.Add(reader.GetString(0), reader.GetInt64(1));
        Assert.Equal(expected.OrderBy(e => e.Key), stored.OrderBy(e => e.Key));
    }

    private static double Median(IEnumerable<float> values)
    {
        var sorted = values.Order().ToArray();
        return sorted[sorted.Length / 2];
    }
}
