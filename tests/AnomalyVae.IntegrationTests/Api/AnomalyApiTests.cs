using System.Text.Json;
using AnomalyVae.IntegrationTests.Infrastructure;
using AnomalyVae.Storage;
using AnomalyVae.Streaming;
using Npgsql;

namespace AnomalyVae.IntegrationTests.Api;

/// <summary>The HTTP API against a real, seeded PostgreSQL: filters, paging, validation, keys, injection attempts.</summary>
[Collection(InfrastructureCollection.Name)]
public sealed class AnomalyApiTests(AnomalyApiTests.SeededApi api) : IClassFixture<AnomalyApiTests.SeededApi>
{
    private const string Key = SeededApi.Key;
    private static DateTimeOffset Newest => SeededApi.Newest;
    private readonly string _connectionString = api.ConnectionString;
    private readonly List<SeededAnomaly> _seeded = api.Seeded;
    private readonly ApiServer _server = api.Server;

    /// <summary>One database with 120 anomalies of two detectors, and the API over it, for the whole class.</summary>
    public sealed class SeededApi(TestInfrastructure infrastructure) : IAsyncLifetime
    {
        public const string Key = "test-key-7f3a";
        public static readonly DateTimeOffset Newest = DateTimeOffset.UtcNow.AddMinutes(-1);

        public string ConnectionString { get; private set; } = "";

        public List<SeededAnomaly> Seeded { get; private set; } = [];

        public ApiServer Server { get; private set; } = null!;

        public async Task InitializeAsync()
        {
            ConnectionString = await infrastructure.CreateDatabaseAsync("api", CancellationToken.None);
            await AnomalySeed.MigrateAsync(ConnectionString);
            Seeded = await AnomalySeed.InsertAsync(ConnectionString, 120, AnomalySeed.Detectors, Newest);
            await AnomalySeed.GroupIntoIncidentsAsync(ConnectionString);
            Server = await ApiServer.StartAsync(ConnectionString, [Key, "second-key"]);
        }

        public async Task DisposeAsync()
        {
            await Server.DisposeAsync();
            await infrastructure.DropDatabaseAsync(ConnectionString, CancellationToken.None);
        }
    }

    [Fact]
    public async Task Detector_and_entity_filters_return_exactly_the_matching_rows_newest_first()
    {
        var body = await _server.GetJsonAsync("/api/anomalies?detector=sensors&entity=m2&limit=1000");
        var expected = AnomalySeed.Ordered(_seeded.Where(a => a.Detector == "sensors" && a.Entity == "m2")).Select(a => a.Id).ToArray();
        Assert.NotEmpty(expected);
        Assert.Equal(expected, Ids(body));
        Assert.Equal(JsonValueKind.Null, body.GetProperty("next").ValueKind);
        var first = body.GetProperty("items")[0];
        Assert.Equal("sensors", first.GetProperty("detector").GetString());
        Assert.Equal("temperature", first.GetProperty("top_features")[0].GetProperty("feature").GetString());
        Assert.Equal(AnomalyQueries.TopFeatureCount, first.GetProperty("top_features").GetArrayLength());
        Assert.True(first.TryGetProperty("detected_at", out _), "snake_case property names");
    }

    [Fact]
    public async Task Time_window_and_min_score_filters()
    {
        var from = Newest.AddMinutes(-60);
        var to = Newest.AddMinutes(-15);
        var url = $"/api/anomalies?detector=payments&from={Uri.EscapeDataString(from.ToString("O"))}&to={Uri.EscapeDataString(to.ToString("O"))}&minScore=35&limit=1000";
        var expected = AnomalySeed.Ordered(_seeded.Where(a => a.Detector == "payments" && a.DetectedAt >= from && a.DetectedAt < to && a.Score >= 35))
            .Select(a => a.Id).ToArray();
        Assert.NotEmpty(expected);
        Assert.Equal(expected, Ids(await _server.GetJsonAsync(url)));
    }

    [Fact]
    public async Task Default_limit_is_50_and_limits_are_honoured()
    {
        var body = await _server.GetJsonAsync("/api/anomalies");
        Assert.Equal(AnomalyFilter.DefaultLimit, body.GetProperty("items").GetArrayLength());
        Assert.Equal(JsonValueKind.String, body.GetProperty("next").ValueKind);
        Assert.Equal(7, (await _server.GetJsonAsync("/api/anomalies?limit=7")).GetProperty("items").GetArrayLength());
        Assert.Equal(await AnomalySeed.CountAsync(_connectionString), (await _server.GetJsonAsync("/api/anomalies?limit=1000")).GetProperty("items").GetArrayLength());
    }

    [Fact]
    public async Task Keyset_pages_stay_stable_while_newer_rows_arrive()
    {
        // A detector of its own, so the rows this test adds do not disturb the other tests' expectations.
        var rows = await AnomalySeed.InsertAsync(_connectionString, 45, ["paging"], Newest, topic: "paging");
        var expected = AnomalySeed.Ordered(rows).Select(a => a.Id).ToList();
        var seen = new List<long>();
        string? cursor = null;
        var pages = 0;
        do
        {
            var body = await _server.GetJsonAsync("/api/anomalies?detector=paging&limit=7" + (cursor is null ? "" : "&after=" + cursor));
            seen.AddRange(Ids(body));
            cursor = body.GetProperty("next").ValueKind == JsonValueKind.Null ? null : body.GetProperty("next").GetString();
            // Newer anomalies of the same detector arrive between page fetches; they belong before the first page.
            await AnomalySeed.InsertAsync(_connectionString, 2, ["paging"], DateTimeOffset.UtcNow, topic: $"late-{pages}");
            pages++;
        }
        while (cursor is not null);
        Assert.Equal(expected, seen); // no duplicates, no gaps, same order
        Assert.Equal((expected.Count + 6) / 7, pages);
    }

    [Theory]
    [InlineData("limit=0", "limit")]
    [InlineData("limit=-1", "limit")]
    [InlineData("limit=1001", "limit")]
    [InlineData("limit=ten", "limit")]
    [InlineData("from=yesterday", "from")]
    [InlineData("to=2026-13-45T99:00:00Z", "to")]
    [InlineData("from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z", "to")]
    [InlineData("minScore=abc", "minScore")]
    [InlineData("minScore=NaN", "minScore")]
    [InlineData("after=not-a-cursor", "after")]
    [InlineData("after=AgAAAAAAAAAAAAAAAAAAAAA", "after")] // right length, unknown format version
    [InlineData("after=AQAAAAAAAAAAAAAAAAAAAAB", "after")] // stray bits in the last character: not the canonical spelling
    [InlineData("after=AQAAAAAAAAAA__________8", "after")] // negative id
    public async Task Bad_parameters_get_400_problem_naming_the_parameter(string query, string parameter)
    {
        var (status, contentType, body) = await _server.SendAsync(HttpMethod.Get, "/api/anomalies?" + query);
        Assert.Equal(400, status);
        Assert.Equal("application/problem+json", contentType);
        Assert.Equal(parameter, body!.Value.GetProperty("parameter").GetString());
        Assert.Equal(400, body.Value.GetProperty("status").GetInt32());
        Assert.False(string.IsNullOrEmpty(body.Value.GetProperty("detail").GetString()));
    }

    [Fact]
    public async Task Tampered_cursors_are_rejected_and_forged_ones_only_move_the_position()
    {
        var first = await _server.GetJsonAsync("/api/anomalies?detector=payments&limit=5");
        var cursor = first.GetProperty("next").GetString()!;
        foreach (var tampered in new[] { cursor[..^1], cursor + "A", "B" + cursor[1..], cursor[..^1] + "/", cursor.Replace('A', '\''), "' OR 1=1 --" + cursor[11..] })
        {
            var (status, _, body) = await _server.SendAsync(HttpMethod.Get, "/api/anomalies?detector=payments&after=" + Uri.EscapeDataString(tampered));
            Assert.True(status == 400, $"cursor '{tampered}' gave {status}");
            Assert.Equal("after", body!.Value.GetProperty("parameter").GetString());
        }

        // A well-formed cursor a client made up is just a position: rows strictly before it, nothing else.
        var position = _seeded.Where(a => a.Detector == "payments").OrderByDescending(a => a.DetectedAt).ThenByDescending(a => a.Id).ElementAt(10);
        var forged = new AnomalyCursor(position.DetectedAt, position.Id).Encode();
        var expected = AnomalySeed.Ordered(_seeded.Where(a => a.Detector == "payments")).SkipWhile(a => a.Id != position.Id).Skip(1).Take(5).Select(a => a.Id);
        Assert.Equal(expected, Ids(await _server.GetJsonAsync("/api/anomalies?detector=payments&limit=5&after=" + forged)));
        // The epoch with id 0 is before every row: an empty last page.
        var epoch = await _server.GetJsonAsync("/api/anomalies?after=AQAAAAAAAAAAAAAAAAAAAAA");
        Assert.Equal(0, epoch.GetProperty("items").GetArrayLength());
        Assert.Equal(JsonValueKind.Null, epoch.GetProperty("next").ValueKind);
    }

    [Theory]
    [InlineData("detector", "x' OR '1'='1")]
    [InlineData("detector", "sensors'; DROP TABLE anomalies; --")]
    [InlineData("detector", "sensors\" OR \"\"=\"")]
    [InlineData("entity", "m1' OR 'a'='a")]
    [InlineData("entity", "m1; DELETE FROM anomalies WHERE true; --")]
    [InlineData("entity", "m1') UNION SELECT * FROM models --")]
    [InlineData("detector", "sensors' /*")]
    public async Task Injection_attempts_in_text_filters_match_nothing_and_harm_nothing(string parameter, string value)
    {
        var body = await _server.GetJsonAsync($"/api/anomalies?{parameter}={Uri.EscapeDataString(value)}&limit=1000");
        Assert.Equal(0, body.GetProperty("items").GetArrayLength());
        await AssertTableIntactAsync();
    }

    [Theory]
    [InlineData("minScore", "0 OR 1=1")]
    [InlineData("from", "2020-01-01'; DROP TABLE anomalies; --")]
    [InlineData("to", "now()")]
    [InlineData("limit", "10; DROP TABLE anomalies")]
    [InlineData("after", "'; DROP TABLE anomalies; --")]
    public async Task Injection_attempts_in_typed_filters_get_400(string parameter, string value)
    {
        var (status, _, body) = await _server.SendAsync(HttpMethod.Get, $"/api/anomalies?{parameter}={Uri.EscapeDataString(value)}");
        Assert.Equal(400, status);
        Assert.Equal(parameter, body!.Value.GetProperty("parameter").GetString());
        await AssertTableIntactAsync();
    }

    [Fact]
    public async Task Injection_attempts_in_ids_and_model_filters_are_refused_or_match_nothing()
    {
        var (status, _, body) = await _server.SendAsync(HttpMethod.Get, "/api/anomalies/" + Uri.EscapeDataString("1 OR 1=1"));
        Assert.Equal(400, status);
        Assert.Equal("id", body!.Value.GetProperty("parameter").GetString());
        var models = await _server.GetJsonAsync("/api/models?detector=" + Uri.EscapeDataString("x' OR '1'='1"));
        Assert.Equal(0, models.GetProperty("items").GetArrayLength());
        (status, _, _) = await _server.SendAsync(HttpMethod.Post, "/api/anomalies/1%3B%20DELETE%20FROM%20anomalies/feedback", new { label = "true_positive" }, Key);
        Assert.Equal(400, status);
        await AssertTableIntactAsync();
    }

    [Fact]
    public async Task Detail_has_all_contributions_the_event_and_feedback()
    {
        var seeded = _seeded[5];
        var (status, _, stored) = await _server.SendAsync(HttpMethod.Post, $"/api/anomalies/{seeded.Id}/feedback",
            new { label = "false_positive", note = "planned maintenance; it's fine" }, Key);
        Assert.Equal(201, status);
        Assert.StartsWith("api-key:", stored!.Value.GetProperty("source").GetString());
        Assert.DoesNotContain(Key, stored.Value.GetProperty("source").GetString());

        var detail = await _server.GetJsonAsync($"/api/anomalies/{seeded.Id}");
        Assert.Equal(seeded.Id, detail.GetProperty("id").GetInt64());
        Assert.Equal(seeded.Entity, detail.GetProperty("entity").GetString());
        Assert.Equal(4, detail.GetProperty("contributions").GetArrayLength());
        Assert.Equal(seeded.Entity, detail.GetProperty("event").GetProperty("machine_id").GetString());
        var feedback = Assert.Single(detail.GetProperty("feedback").EnumerateArray());
        Assert.Equal("false_positive", feedback.GetProperty("label").GetString());
        Assert.Equal("planned maintenance; it's fine", feedback.GetProperty("note").GetString());

        await using var connection = new NpgsqlConnection(_connectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("SELECT label, source FROM anomaly_feedback WHERE anomaly_id = $1", connection);
        command.Parameters.Add(new NpgsqlParameter<long> { TypedValue = seeded.Id });
        await using var reader = await command.ExecuteReaderAsync();
        Assert.True(await reader.ReadAsync());
        Assert.Equal("false_positive", reader.GetString(0));
    }

    [Fact]
    public async Task Feedback_validation_and_unknown_ids()
    {
        var id = _seeded[0].Id;
        Assert.Equal(400, (await _server.SendAsync(HttpMethod.Post, $"/api/anomalies/{id}/feedback", new { label = "maybe" }, Key)).Status);
        Assert.Equal(400, (await _server.SendAsync(HttpMethod.Post, $"/api/anomalies/{id}/feedback", apiKey: Key, rawBody: "{\"label\": ")).Status);
        Assert.Equal(400, (await _server.SendAsync(HttpMethod.Post, $"/api/anomalies/{id}/feedback", apiKey: Key)).Status);
        Assert.Equal(400, (await _server.SendAsync(HttpMethod.Post, $"/api/anomalies/{id}/feedback",
            new { label = "true_positive", note = new string('x', FeedbackStore.MaxNoteLength + 1) }, Key)).Status);
        var (status, contentType, _) = await _server.SendAsync(HttpMethod.Post, "/api/anomalies/987654321/feedback", new { label = "true_positive" }, Key);
        Assert.Equal(404, status);
        Assert.Equal("application/problem+json", contentType);
        Assert.Equal(404, (await _server.SendAsync(HttpMethod.Get, "/api/anomalies/987654321")).Status);
        Assert.Equal(404, (await _server.SendAsync(HttpMethod.Post, "/api/models/no-such-version/activate?detector=sensors", apiKey: Key)).Status);
    }

    [Fact]
    public async Task Incidents_are_listed_with_filters_and_paging_drill_down_to_their_anomalies_and_take_feedback()
    {
        var sensors = await _server.GetJsonAsync("/api/incidents?detector=sensors");
        var items = sensors.GetProperty("items").EnumerateArray().ToList();
        var perEntity = _seeded.Where(a => a.Detector == "sensors").GroupBy(a => a.Entity).ToDictionary(g => g.Key, g => g.Count());
        Assert.Equal(perEntity.OrderBy(e => e.Key).Select(e => $"{e.Key}:{e.Value}"),
            items.Select(i => $"{i.GetProperty("entity").GetString()}:{i.GetProperty("anomaly_count").GetInt64()}").Order());
        Assert.All(items, i => Assert.Equal("temperature", i.GetProperty("top_features")[0].GetProperty("feature").GetString()));

        var closed = Assert.Single((await _server.GetJsonAsync("/api/incidents?detector=sensors&status=closed")).GetProperty("items").EnumerateArray());
        Assert.Equal(("m0", "closed"), (closed.GetProperty("entity").GetString(), closed.GetProperty("status").GetString()));
        Assert.Equal(4, (await _server.GetJsonAsync("/api/incidents?detector=sensors&status=open")).GetProperty("items").GetArrayLength());
        Assert.Equal(2, (await _server.GetJsonAsync("/api/incidents?entity=m3")).GetProperty("items").GetArrayLength());

        // Keyset pages of 3 cover every incident once.
        var seen = new List<long>();
        string? next = null;
        do
        {
            var page = await _server.GetJsonAsync("/api/incidents?limit=3" + (next is null ? "" : "&after=" + next));
            seen.AddRange(page.GetProperty("items").EnumerateArray().Select(i => i.GetProperty("id").GetInt64()));
            next = page.GetProperty("next").GetString();
        }
        while (next is not null);
        Assert.Equal(10, seen.Count);
        Assert.Equal(10, seen.Distinct().Count());

        var id = closed.GetProperty("id").GetInt64();
        var detail = await _server.GetJsonAsync($"/api/incidents/{id}");
        Assert.Equal(3, detail.GetProperty("top_features").GetArrayLength());
        var anomalies = (await _server.GetJsonAsync($"/api/anomalies?incident={id}&limit=1000")).GetProperty("items").EnumerateArray().ToList();
        Assert.Equal(perEntity["m0"], anomalies.Count);
        Assert.All(anomalies, a => Assert.Equal(("sensors", "m0"), (a.GetProperty("detector").GetString(), a.GetProperty("entity").GetString())));

        Assert.Equal(401, (await _server.SendAsync(HttpMethod.Post, $"/api/incidents/{id}/feedback", new { label = "false_positive" })).Status);
        Assert.Equal(400, (await _server.SendAsync(HttpMethod.Post, $"/api/incidents/{id}/feedback", new { label = "maybe" }, Key)).Status);
        Assert.Equal(404, (await _server.SendAsync(HttpMethod.Post, "/api/incidents/987654321/feedback", new { label = "false_positive" }, Key)).Status);
        var (status, _, body) = await _server.SendAsync(HttpMethod.Post, $"/api/incidents/{id}/feedback", new { label = "false_positive", note = "known maintenance" }, Key);
        Assert.Equal(201, status);
        Assert.Equal(perEntity["m0"], body!.Value.GetProperty("anomalies_labelled").GetInt64());
        var one = await _server.GetJsonAsync($"/api/anomalies/{anomalies[0].GetProperty("id").GetInt64()}");
        Assert.Contains(one.GetProperty("feedback").EnumerateArray(), f => f.GetProperty("note").GetString() == "known maintenance");

        Assert.Equal(404, (await _server.SendAsync(HttpMethod.Get, "/api/incidents/987654321")).Status);
        foreach (var (query, parameter) in new[] { ("status=stuck", "status"), ("limit=0", "limit"), ("after=xyz", "after"), ("from=yesterday", "from") })
        {
            var (badStatus, _, problem) = await _server.SendAsync(HttpMethod.Get, "/api/incidents?" + query);
            Assert.Equal(400, badStatus);
            Assert.Equal(parameter, problem!.Value.GetProperty("parameter").GetString());
        }
        var (badIncident, _, incidentProblem) = await _server.SendAsync(HttpMethod.Get, "/api/anomalies?incident=-1");
        Assert.Equal((400, "incident"), (badIncident, incidentProblem!.Value.GetProperty("parameter").GetString()));
    }

    [Fact]
    public async Task Writes_need_a_configured_key()
    {
        var path = $"/api/anomalies/{_seeded[1].Id}/feedback";
        var (status, contentType, body) = await _server.SendAsync(HttpMethod.Post, path, new { label = "true_positive" });
        Assert.Equal(401, status);
        Assert.Equal("application/problem+json", contentType);
        Assert.Equal(401, (await _server.SendAsync(HttpMethod.Post, path, new { label = "true_positive" }, "wrong-key")).Status);
        Assert.Equal(401, (await _server.SendAsync(HttpMethod.Post, "/api/models/v1/activate?detector=sensors", apiKey: "nope")).Status);
        Assert.Equal(201, (await _server.SendAsync(HttpMethod.Post, path, new { label = "true_positive" }, "second-key")).Status);
        Assert.Contains("X-Api-Key", body!.Value.GetProperty("detail").GetString());
    }

    [Fact]
    public async Task Without_configured_keys_writes_are_refused_and_say_how_to_configure_them()
    {
        await using var server = await ApiServer.StartAsync(_connectionString, []);
        var (status, _, body) = await server.SendAsync(HttpMethod.Post, $"/api/anomalies/{_seeded[0].Id}/feedback", new { label = "true_positive" }, "anything");
        Assert.Equal(401, status);
        Assert.Contains("Api:Keys", body!.Value.GetProperty("detail").GetString());
        Assert.Equal(200, (await server.SendAsync(HttpMethod.Get, "/api/anomalies?limit=1")).Status);
    }

    [Fact]
    public async Task Reads_can_require_a_key()
    {
        await using var server = await ApiServer.StartAsync(_connectionString, [Key], requireKeyForReads: true);
        Assert.Equal(401, (await server.SendAsync(HttpMethod.Get, "/api/anomalies")).Status);
        Assert.Equal(401, (await server.SendAsync(HttpMethod.Get, "/api/detectors", apiKey: "wrong")).Status);
        Assert.Equal(200, (await server.SendAsync(HttpMethod.Get, "/api/anomalies", apiKey: Key)).Status);
        Assert.Equal(200, (await server.SendAsync(HttpMethod.Get, "/api/detectors", apiKey: Key)).Status);
    }

    [Fact]
    public async Task Detectors_report_threshold_flag_rate_and_unknown_drift()
    {
        await using (var connection = new NpgsqlConnection(_connectionString))
        {
            await connection.OpenAsync();
            await using var command = new NpgsqlCommand(
                """
                INSERT INTO scoring_stats (detector, window_start, window_seconds, model_version, events_scored, events_flagged, score_bins)
                VALUES ('sensors', date_trunc('minute', now()) - interval '20 minutes', 60, 'v-old', 1000, 0, '{0,0,0,0,0,0,0,0,0,0,1000}'),
                       ('sensors', date_trunc('minute', now()) - interval '10 minutes', 60, 'v-seed', 1000, 12, NULL),
                       ('sensors', date_trunc('minute', now()) - interval '5 minutes', 60, 'v-seed', 3000, 8, '{30,30,30,30,30,30,30,30,30,27,3}'),
                       ('sensors', now() - interval '3 hours', 60, 'v-seed', 5000, 4000, '{0,0,0,0,0,0,0,0,0,0,5000}')
                """, connection);
            await command.ExecuteNonQueryAsync();
        }
        var body = await _server.GetJsonAsync("/api/detectors");
        var sensors = body.GetProperty("items").EnumerateArray().Single(d => d.GetProperty("detector").GetString() == "sensors");
        Assert.Equal(18.5, sensors.GetProperty("threshold").GetDouble());
        Assert.Equal("latest_anomaly", sensors.GetProperty("threshold_source").GetString());
        Assert.Equal(5000, sensors.GetProperty("events_scored_last_hour").GetInt64());
        Assert.Equal(20.0 / 5000, sensors.GetProperty("flag_rate_last_hour").GetDouble(), 12);
        // Drift reads only the most recent model version's windows within the hour: 300 events in exactly the
        // calibration shares (PSI 0), too few (< 500) for a verdict.
        Assert.Equal("unknown", sensors.GetProperty("drift_status").GetString());
        Assert.Equal(300, sensors.GetProperty("drift_events").GetInt64());
        Assert.Equal(0, sensors.GetProperty("drift_psi").GetDouble(), 12);
        Assert.Equal(JsonValueKind.Null, sensors.GetProperty("active_model_version").ValueKind);
        var payments = body.GetProperty("items").EnumerateArray().Single(d => d.GetProperty("detector").GetString() == "payments");
        Assert.Equal(JsonValueKind.Null, payments.GetProperty("flag_rate_last_hour").ValueKind);
        Assert.Equal(("unknown", JsonValueKind.Null, 0L), (payments.GetProperty("drift_status").GetString(),
            payments.GetProperty("drift_psi").ValueKind, payments.GetProperty("drift_events").GetInt64()));
    }

    [Fact]
    public async Task Unknown_api_paths_are_404_problems()
    {
        var (status, contentType, _) = await _server.SendAsync(HttpMethod.Get, "/api/nothing-here");
        Assert.Equal(404, status);
        Assert.Equal("application/problem+json", contentType);
    }

    private async Task AssertTableIntactAsync()
    {
        Assert.True(await AnomalySeed.CountAsync(_connectionString) >= _seeded.Count);
        var body = await _server.GetJsonAsync("/api/anomalies?detector=sensors&limit=1000");
        Assert.True(body.GetProperty("items").GetArrayLength() >= _seeded.Count(a => a.Detector == "sensors"));
    }

    private static long[] Ids(JsonElement page) => [.. page.GetProperty("items").EnumerateArray().Select(i => i.GetProperty("id").GetInt64())];
}
