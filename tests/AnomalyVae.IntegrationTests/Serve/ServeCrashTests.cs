using AnomalyVae.IntegrationTests.Infrastructure;
using Npgsql;

namespace AnomalyVae.IntegrationTests.Serve;

/// <summary>
/// The effectively-once claim under the crudest failure: the real <c>anomalyvae serve</c> process is killed
/// (SIGKILL) at random points while it streams, restarted, killed again, ... and finally runs to the end. The
/// anomaly rows must be exactly those of direct scoring, each once, and the statistics must count every event
/// once (they commit in the same transaction as the offsets, so a replayed batch would count twice).
/// </summary>
[Collection(InfrastructureCollection.Name)]
public sealed class ServeCrashTests(TestInfrastructure infrastructure, ServeFixture fixture) : IClassFixture<ServeFixture>
{
    private const int Kills = 5;

    [Fact]
    public async Task Killed_five_times_mid_stream_the_rows_are_exactly_those_of_an_uninterrupted_run()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(4));
        var topic = await infrastructure.CreateTopicAsync("serve-crash", partitions: 4, cts.Token);
        var deadLetters = await infrastructure.CreateTopicAsync("serve-crash-dlq", partitions: 1, cts.Token);
        var database = await infrastructure.CreateDatabaseAsync("crash", cts.Token);
        try
        {
            var events = await ServeFixture.ProduceAsync(infrastructure, topic, ServeFixture.Events(100_000, seed: 41), cts.Token);
            var configuration = fixture.Configuration(infrastructure, topic, deadLetters, database, $"g-{Guid.NewGuid():N}");
            // Smaller batches: more commits, so the kills land between and inside many of them.
            configuration["Scoring:BatchSize"] = "256";
            // A killed member stays in the group until its session times out; keep that short.
            configuration["Kafka:Properties:session.timeout.ms"] = "6000";
            // Incidents as long as the stream (28 h of event time): whatever order the partitions are consumed in, each
            // entity's anomalies form exactly one incident, so its count can be compared with direct scoring.
            configuration["Detectors:0:IncidentGap"] = "1.00:00:00";
            var configFile = await ServeProcess.WriteConfigAsync(fixture.Directory, configuration, cts.Token);

            await ServeProcess.KillMidStreamAsync(configFile, database, topic, events, Kills, seed: 42, "kill", cts.Token);

            var expected = fixture.DirectScores(events, out double threshold, out var undecodable);
            var flagged = expected.Where(e => e.Value > threshold).Select(e => e.Key).Order().ToList();
            await ServeFixture.AssertRowsAndTotalsAsync(database, flagged, expected.Count, undecodable.Count, cts.Token);
            await using var connection = new NpgsqlConnection(database);
            await connection.OpenAsync(cts.Token);

            // Incidents commit with the anomalies: one per entity, counting each of its anomalies once (a replayed
            // batch that counted again would show here), every anomaly in its entity's incident.
            var byKey = events.ToDictionary(e => (e.Partition, e.Offset));
            var expectedIncidents = flagged.GroupBy(k => ServeFixture.Entity(byKey[k].Payload!))
                .Select(g => $"{g.Key}:{g.Count()}").Order(StringComparer.Ordinal).ToList();
            var incidents = new List<string>();
            await using (var command = new NpgsqlCommand(
                """
                SELECT i.entity || ':' || i.anomaly_count FROM incidents i
                WHERE i.anomaly_count = (SELECT count(*) FROM anomalies a WHERE a.incident_id = i.id AND a.entity = i.entity)
                  AND i.peak_score = (SELECT max(score) FROM anomalies a WHERE a.incident_id = i.id)
                  AND i.closed_at IS NULL
                """, connection))
            await using (var reader = await command.ExecuteReaderAsync(cts.Token))
            {
                while (await reader.ReadAsync(cts.Token))
                    incidents.Add(reader.GetString(0));
            }
            Assert.Equal(expectedIncidents, incidents.Order(StringComparer.Ordinal));
            await using (var command = new NpgsqlCommand("SELECT count(*) FROM anomalies WHERE incident_id IS NULL", connection))
                Assert.Equal(0L, (long)(await command.ExecuteScalarAsync(cts.Token))!);

            // The retraining samples commit with the offsets too: a replayed batch admits its events again only if
            // its first attempt did not commit, so with the default sizes (not yet full) every admission is one row,
            // each event at most once, never in both samples, and the reservoir holds only normal events.
            await using (var command = new NpgsqlCommand(
                """
                SELECT c.training_admitted, c.recent_admitted,
                       (SELECT count(*) FROM training_sample), (SELECT count(DISTINCT ("partition", "offset")) FROM training_sample),
                       (SELECT count(*) FROM recent_events), (SELECT count(DISTINCT ("partition", "offset")) FROM recent_events),
                       (SELECT count(*) FROM training_sample t JOIN recent_events r USING ("partition", "offset")),
                       (SELECT coalesce(max(score), 0) FROM training_sample),
                       (SELECT sum(b)::bigint FROM scoring_stats, unnest(score_bins) AS b)
                FROM sample_counters c
                """, connection))
            await using (var reader = await command.ExecuteReaderAsync(cts.Token))
            {
                Assert.True(await reader.ReadAsync(cts.Token));
                long training = reader.GetInt64(0), recent = reader.GetInt64(1);
                Console.WriteLine($"samples after the kills: {training} admitted to the reservoir, {recent} to the ring");
                Assert.InRange(training, 1, 20_000 - 1);
                Assert.InRange(recent, 1, 5_000 - 1);
                Assert.Equal((training, training), (reader.GetInt64(2), reader.GetInt64(3)));
                Assert.Equal((recent, recent), (reader.GetInt64(4), reader.GetInt64(5)));
                Assert.Equal(0, reader.GetInt64(6));
                Assert.True(reader.GetDouble(7) <= threshold);
                Assert.Equal(expected.Count, reader.GetInt64(8));
            }
        }
        finally
        {
            await infrastructure.DropDatabaseAsync(database, CancellationToken.None);
        }
    }
}
