using System.Globalization;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using AnomalyVae.Api;
using AnomalyVae.IntegrationTests.Infrastructure;
using AnomalyVae.Storage;
using AnomalyVae.Tests;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace AnomalyVae.IntegrationTests.Api;

/// <summary>
/// The findings of the hostile-user probe (issue 14), each against the real API over a real PostgreSQL: problem
/// details on every error path, body limits and types, short quotes of bad values, strict times, allowed hosts,
/// throttled and logged failed keys, key identities, dashboard headers.
/// </summary>
[Collection(InfrastructureCollection.Name)]
public sealed class ApiHardeningTests(AnomalyApiTests.SeededApi api) : IClassFixture<AnomalyApiTests.SeededApi>
{
    private const string Key = AnomalyApiTests.SeededApi.Key;
    private readonly ApiServer _server = api.Server;

    [Theory]
    [InlineData("POST", "/api/anomalies", "GET")]
    [InlineData("DELETE", "/api/anomalies/1", "GET")]
    [InlineData("PUT", "/api/detectors", "GET")]
    [InlineData("PATCH", "/api/models", "GET")]
    [InlineData("GET", "/api/models/v1/activate", "POST")]
    [InlineData("GET", "/api/anomalies/1/feedback", "POST")]
    [InlineData("POST", "/dashboard/app.js", "GET")]
    public async Task Wrong_method_is_405_with_Allow_and_a_problem(string method, string path, string allowed)
    {
        var (status, contentType, body, response) = await _server.SendFullAsync(new HttpMethod(method), path, apiKey: Key);
        using (response)
        {
            Assert.Equal(405, status);
            Assert.Equal("application/problem+json", contentType);
            Assert.Equal(405, body!.Value.GetProperty("status").GetInt32());
            Assert.Equal(allowed, string.Join(",", response.Content.Headers.Allow));
        }
    }

    [Theory]
    [InlineData("/api/nothing-here")]
    [InlineData("/api/anomalies/1/2/3")]
    [InlineData("/nothing-here")]
    [InlineData("/favicon.ico")]
    [InlineData("/dashboard/../../etc/passwd")]
    public async Task Unknown_paths_are_404_problems_inside_and_outside_the_api(string path)
    {
        var (status, contentType, body) = await _server.SendAsync(HttpMethod.Get, path);
        Assert.Equal(404, status);
        Assert.Equal("application/problem+json", contentType);
        Assert.Equal(404, body!.Value.GetProperty("status").GetInt32());
    }

    [Fact]
    public async Task Database_down_is_503_with_Retry_After_on_every_endpoint()
    {
        // A port nothing listens on: the database is unreachable from the first request.
        await using var server = await ApiServer.StartAsync("Host=127.0.0.1;Port=1;Username=nobody;Database=none;Timeout=2", [Key],
            new Dictionary<string, string?> { ["Api:Migrate"] = "false" }, logs: null);
        (HttpMethod, string, object?)[] requests =
        [
            (HttpMethod.Get, "/api/anomalies", null),
            (HttpMethod.Get, "/api/anomalies/7", null),
            (HttpMethod.Get, "/api/detectors", null),
            (HttpMethod.Get, "/api/models?detector=sensors", null),
            (HttpMethod.Post, "/api/models/v1/activate?detector=sensors", null),
            (HttpMethod.Post, "/api/anomalies/7/feedback", new { label = "true_positive" }),
        ];
        foreach (var (method, path, json) in requests)
        {
            var (status, contentType, body, response) = await server.SendFullAsync(method, path, json, Key);
            using (response)
            {
                Assert.True(status == 503, $"{method} {path}: {status}");
                Assert.Equal("application/problem+json", contentType);
                Assert.Equal("Database unavailable", body!.Value.GetProperty("title").GetString());
                Assert.Equal(TimeSpan.FromSeconds(5), response.Headers.RetryAfter?.Delta);
                Assert.DoesNotContain("Npgsql", body.Value.GetRawText(), StringComparison.Ordinal);
            }
        }
    }

    [Fact]
    public async Task Bodies_over_the_endpoint_limit_are_413_problems_without_being_read()
    {
        var id = api.Seeded[0].Id;
        var json = Encoding.UTF8.GetBytes("{\"label\":\"true_positive\",\"note\":\"" + new string('x', 100_000) + "\"}");

        // A Content-Length over the limit is refused before a byte of the body is sent.
        var (status, contentType, body) = await RawPostAsync($"/api/anomalies/{id}/feedback", $"Content-Length: {json.Length}", []);
        Assert.Equal(413, status);
        Assert.Equal("application/problem+json", contentType);
        Assert.Contains(AnomalyApi.MaxFeedbackBodyBytes.ToString(CultureInfo.InvariantCulture), body.GetProperty("detail").GetString());

        // Activation needs a detector name: 10 KB of ignored JSON is refused too.
        (status, _, _) = await RawPostAsync("/api/models/v1/activate?detector=sensors", "Content-Length: 10000", []);
        Assert.Equal(413, status);

        // Chunked (no Content-Length): refused once the limit is passed, without waiting for the rest.
        int sent = AnomalyApi.MaxFeedbackBodyBytes + 1;
        var chunk = Encoding.ASCII.GetBytes($"{sent:x}\r\n").Concat(json.Take(sent)).Concat("\r\n"u8.ToArray()).ToArray();
        (status, contentType, _) = await RawPostAsync($"/api/anomalies/{id}/feedback", "Transfer-Encoding: chunked", chunk);
        Assert.Equal(413, status);
        Assert.Equal("application/problem+json", contentType);
    }

    /// <summary>
    /// POSTs a request head and <paramref name="body"/> (which may stop short of what the head announces) over a raw
    /// connection, then reads the response until the server closes. Nothing is written after the bytes that pass the
    /// limit, so the 413 and the close that follows cannot race an upload still being written (with HttpClient, the
    /// rest of a body written after the close fails with a broken pipe instead of returning the response).
    /// </summary>
    private async Task<(int Status, string? ContentType, JsonElement Body)> RawPostAsync(string path, string framing, byte[] body)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        var uri = new Uri(_server.BaseAddress);
        using var tcp = new System.Net.Sockets.TcpClient();
        await tcp.ConnectAsync(uri.Host, uri.Port, cts.Token);
        var stream = tcp.GetStream();
        var head = $"POST {path} HTTP/1.1\r\nHost: {uri.Authority}\r\n{ApiOptions.KeyHeader}: {Key}\r\n" +
                   $"Content-Type: application/json\r\nConnection: close\r\n{framing}\r\n\r\n";
        await stream.WriteAsync(Encoding.ASCII.GetBytes(head), cts.Token);
        await stream.WriteAsync(body, cts.Token);
        // Read until the response is complete, not until the server closes: after refusing an announced body the
        // server may wait for it and then reset the connection.
        var response = new MemoryStream();
        var read = new byte[8192];
        string text = "", content = "";
        string[] lines = [];
        string? Header(string name) => lines.Skip(1).Select(l => l.Split(':', 2)).Where(h => h[0].Trim().Equals(name, StringComparison.OrdinalIgnoreCase))
            .Select(h => h[1].Trim()).FirstOrDefault();
        bool chunked = false;
        while (true)
        {
            int n = await stream.ReadAsync(read, cts.Token);
            Assert.True(n > 0, $"the connection closed before a complete response: {text}");
            response.Write(read, 0, n);
            text = Encoding.UTF8.GetString(response.ToArray());
            int split = text.IndexOf("\r\n\r\n", StringComparison.Ordinal);
            if (split < 0)
                continue;
            lines = text[..split].Split("\r\n");
            content = text[(split + 4)..];
            chunked = Header("Transfer-Encoding")?.Contains("chunked", StringComparison.OrdinalIgnoreCase) == true;
            if (chunked ? content.EndsWith("0\r\n\r\n", StringComparison.Ordinal)
                        : Encoding.UTF8.GetByteCount(content) >= int.Parse(Header("Content-Length") ?? "0", CultureInfo.InvariantCulture))
                break;
        }
        int status = int.Parse(lines[0].Split(' ')[1], CultureInfo.InvariantCulture);
        if (chunked)
        {
            var joined = new StringBuilder();
            for (int at = 0; ;)
            {
                int end = content.IndexOf("\r\n", at, StringComparison.Ordinal);
                int size = int.Parse(content[at..end], NumberStyles.HexNumber, CultureInfo.InvariantCulture);
                if (size == 0)
                    break;
                joined.Append(content, end + 2, size);
                at = end + 2 + size + 2;
            }
            content = joined.ToString();
        }
        using var document = JsonDocument.Parse(content);
        return (status, Header("Content-Type")?.Split(';')[0].Trim(), document.RootElement.Clone());
    }

    [Theory]
    [InlineData("text/plain")]
    [InlineData("application/x-www-form-urlencoded")]
    [InlineData("multipart/form-data; boundary=x")]
    [InlineData("application/xml")]
    public async Task Non_json_bodies_are_415(string mediaType)
    {
        var (status, contentType, body, response) = await _server.SendFullAsync(HttpMethod.Post, $"/api/anomalies/{api.Seeded[0].Id}/feedback",
            apiKey: Key, content: new ByteArrayContent(Encoding.UTF8.GetBytes("{\"label\":\"true_positive\"}")) { Headers = { { "Content-Type", mediaType } } });
        using (response)
        {
            Assert.Equal(415, status);
            Assert.Equal("application/problem+json", contentType);
            Assert.Contains("application/json", body!.Value.GetProperty("detail").GetString());
        }
    }

    [Theory]
    [InlineData("limit")]
    [InlineData("minScore")]
    [InlineData("from")]
    [InlineData("to")]
    public async Task Bad_values_are_quoted_only_as_a_short_prefix(string parameter)
    {
        var value = "9" + new string('A', 7000);
        var (status, _, body) = await _server.SendAsync(HttpMethod.Get, $"/api/anomalies?{parameter}={value}");
        Assert.Equal(400, status);
        var detail = body!.Value.GetProperty("detail").GetString()!;
        Assert.True(detail.Length < 250, $"detail of {detail.Length} characters");
        Assert.Contains("(7001 characters)", detail);
        Assert.True(body.Value.GetRawText().Length < 600);
    }

    [Theory]
    [InlineData("Jan 1 2020")]
    [InlineData("12:00")]
    [InlineData("2020/01/01")]
    [InlineData("01/02/2020")]
    [InlineData("2020-01-01 12:00:00")]
    [InlineData("Wed, 01 Jan 2020 00:00:00 GMT")]
    [InlineData("2020-1-1")]
    public async Task Times_must_be_strict_ISO_8601(string time)
    {
        var (status, _, body) = await _server.SendAsync(HttpMethod.Get, "/api/anomalies?from=" + Uri.EscapeDataString(time));
        Assert.Equal(400, status);
        Assert.Equal("from", body!.Value.GetProperty("parameter").GetString());
        Assert.Equal("iso8601", body.Value.GetProperty("rule").GetString());
    }

    [Theory]
    [InlineData("2020-01-01")]
    [InlineData("2020-01-01T12:00Z")]
    [InlineData("2020-01-01T12:00:00Z")]
    [InlineData("2020-01-01T12:00:00.123456Z")]
    [InlineData("2020-01-01T12:00:00+02:00")]
    [InlineData("2020-01-01T12:00:00")]
    public async Task ISO_8601_times_are_accepted(string time)
    {
        var (status, _, _) = await _server.SendAsync(HttpMethod.Get, "/api/anomalies?limit=1&from=" + Uri.EscapeDataString(time));
        Assert.Equal(200, status);
    }

    [Fact]
    public async Task Validation_messages_name_the_rule_that_failed()
    {
        var path = $"/api/anomalies/{api.Seeded[2].Id}/feedback";
        async Task<(string? Parameter, string? Rule, string Detail)> Fails(object json)
        {
            var (status, _, body) = await _server.SendAsync(HttpMethod.Post, path, json, Key);
            Assert.Equal(400, status);
            return (body!.Value.GetProperty("parameter").GetString(), body.Value.GetProperty("rule").GetString(), body.Value.GetProperty("detail").GetString()!);
        }
        var nul = await Fails(new { label = "true_positive", note = "before\0after" });
        Assert.Equal(("note", "no_nul"), (nul.Parameter, nul.Rule));
        Assert.Contains("NUL", nul.Detail);
        Assert.DoesNotContain("at most", nul.Detail);
        var tooLong = await Fails(new { label = "true_positive", note = new string('n', FeedbackStore.MaxNoteLength + 1) });
        Assert.Equal(("note", "max_length"), (tooLong.Parameter, tooLong.Rule));
        Assert.Contains($"not {FeedbackStore.MaxNoteLength + 1}", tooLong.Detail);
        var label = await Fails(new { label = "maybe" });
        Assert.Equal(("label", "one_of"), (label.Parameter, label.Rule));
        Assert.Equal(("detector", "no_nul"), await RuleOf("/api/anomalies?detector=a%00b"));
        Assert.Equal(("detector", "max_length"), await RuleOf("/api/anomalies?detector=" + new string('d', AnomalyApi.MaxFilterLength + 1)));
        Assert.Equal(("limit", "range"), await RuleOf("/api/anomalies?limit=0"));
        Assert.Equal(("id", "positive_integer"), await RuleOf("/api/anomalies/-3"));
    }

    [Fact]
    public async Task A_detector_name_with_a_trailing_newline_is_refused()
    {
        var (status, _, body) = await _server.SendAsync(HttpMethod.Post, "/api/models/v1/activate", new { detector = "sensors\n" }, Key);
        Assert.Equal(400, status);
        Assert.Equal(("detector", "name_syntax"), (body!.Value.GetProperty("parameter").GetString(), body.Value.GetProperty("rule").GetString()));
        Assert.Contains("\\u000a", body.Value.GetProperty("detail").GetString());
    }

    [Theory]
    [InlineData("evil.example")]
    [InlineData("attacker.test:8081")]
    [InlineData("127.0.0.1.nip.io")]
    public async Task Host_headers_outside_the_allowed_hosts_are_refused(string host)
    {
        var (status, contentType, _, response) = await _server.SendFullAsync(HttpMethod.Get, "/api/anomalies?limit=1", headers: [("Host", host)]);
        using (response)
        {
            Assert.Equal(400, status);
            Assert.Equal("application/problem+json", contentType);
        }
        var port = new Uri(_server.BaseAddress).Port;
        foreach (var allowed in new[] { $"localhost:{port}", $"127.0.0.1:{port}" })
        {
            var (ok, _, _, r) = await _server.SendFullAsync(HttpMethod.Get, "/api/anomalies?limit=1", headers: [("Host", allowed)]);
            r.Dispose();
            Assert.Equal(200, ok);
        }
    }

    [Fact]
    public async Task Configured_allowed_hosts_replace_the_loopback_default()
    {
        await using var server = await ApiServer.StartAsync(api.ConnectionString, [Key],
            new Dictionary<string, string?> { ["Api:AllowedHosts:0"] = "anomalies.example.com", ["Api:Migrate"] = "false" }, logs: null);
        var (named, _, _, r1) = await server.SendFullAsync(HttpMethod.Get, "/api/detectors", headers: [("Host", "anomalies.example.com")]);
        var (loopback, _, _, r2) = await server.SendFullAsync(HttpMethod.Get, "/api/detectors");
        r1.Dispose();
        r2.Dispose();
        Assert.Equal((200, 400), (named, loopback));
    }

    [Fact]
    public async Task Failed_keys_are_throttled_per_source_and_logged_as_warnings_without_the_key()
    {
        var logs = new LogCapture();
        await using var server = await ApiServer.StartAsync(api.ConnectionString, [Key],
            new Dictionary<string, string?> { ["Api:FailedAuthLimit"] = "3", ["Api:FailedAuthWindowSeconds"] = "3600", ["Api:Migrate"] = "false" }, logs);
        var path = $"/api/anomalies/{api.Seeded[4].Id}/feedback";
        for (var i = 0; i < 3; i++)
            Assert.Equal(401, (await server.SendAsync(HttpMethod.Post, path, new { label = "true_positive" }, "guess-" + i)).Status);
        var (status, contentType, _, response) = await server.SendFullAsync(HttpMethod.Post, path, new { label = "true_positive" }, "guess-3");
        using (response)
        {
            Assert.Equal(429, status);
            Assert.Equal("application/problem+json", contentType);
            Assert.Equal(TimeSpan.FromHours(1), response.Headers.RetryAfter?.Delta);
        }
        // Throttled means throttled: even the right key waits for the window.
        Assert.Equal(429, (await server.SendAsync(HttpMethod.Post, path, new { label = "true_positive" }, Key)).Status);

        var warnings = logs.Entries.Where(e => e.Level == LogLevel.Warning && e.Text.Contains("Failed API key attempt", StringComparison.Ordinal)).ToList();
        Assert.Equal(3, warnings.Count);
        Assert.All(warnings, w => Assert.Contains("127.0.0.1", w.Text));
        Assert.DoesNotContain("guess-", logs.AllText, StringComparison.Ordinal);
        Assert.DoesNotContain(Key, logs.AllText, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Feedback_identifies_keys_by_name_or_by_an_HMAC_under_the_server_secret()
    {
        const string secret = "server-side-id-secret";
        await using var server = await ApiServer.StartAsync(api.ConnectionString, ["unnamed-key"],
            new Dictionary<string, string?> { ["Api:NamedKeys:ops"] = "named-key", ["Api:KeyIdSecret"] = secret, ["Api:Migrate"] = "false" }, logs: null);
        var path = $"/api/anomalies/{api.Seeded[6].Id}/feedback";
        var (_, _, named) = await server.SendAsync(HttpMethod.Post, path, new { label = "true_positive" }, "named-key");
        Assert.Equal("api-key:ops", named!.Value.GetProperty("source").GetString());

        var (_, _, unnamed) = await server.SendAsync(HttpMethod.Post, path, new { label = "true_positive" }, "unnamed-key");
        var hmac = Convert.ToHexStringLower(HMACSHA256.HashData(Encoding.UTF8.GetBytes(secret), Encoding.UTF8.GetBytes("unnamed-key")).AsSpan(0, 4));
        var unsalted = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes("unnamed-key")).AsSpan(0, 4));
        Assert.Equal("api-key:" + hmac, unnamed!.Value.GetProperty("source").GetString());
        Assert.NotEqual("api-key:" + unsalted, unnamed.Value.GetProperty("source").GetString());

        // What an anonymous reader sees on the anomaly: no digest of the key at all.
        var detail = await server.GetJsonAsync($"/api/anomalies/{api.Seeded[6].Id}");
        Assert.DoesNotContain(unsalted, detail.GetRawText(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Reads_need_a_key_by_default_when_the_API_listens_beyond_loopback()
    {
        await using var server = await ApiServer.StartAsync(api.ConnectionString, [Key],
            new Dictionary<string, string?> { ["Api:Host"] = "0.0.0.0", ["Api:Migrate"] = "false" }, logs: null);
        Assert.Equal(401, (await server.SendAsync(HttpMethod.Get, "/api/anomalies?limit=1")).Status);
        Assert.Equal(200, (await server.SendAsync(HttpMethod.Get, "/api/anomalies?limit=1", apiKey: Key)).Status);
        // On loopback (the fixture's server) they stay open.
        Assert.Equal(200, (await _server.SendAsync(HttpMethod.Get, "/api/anomalies?limit=1")).Status);
    }

    [Theory]
    [InlineData("/")]
    [InlineData("/dashboard")]
    [InlineData("/dashboard/app.js")]
    [InlineData("/dashboard/no-such-file.js")]
    public async Task Dashboard_answers_carry_CSP_nosniff_and_frame_ancestors(string path)
    {
        using var response = await _server.Client.GetAsync(path);
        var csp = string.Join(";", response.Headers.GetValues("Content-Security-Policy"));
        Assert.Contains("frame-ancestors 'none'", csp);
        Assert.Contains("script-src 'self'", csp);
        Assert.DoesNotContain("unsafe-inline", csp);
        Assert.Equal("nosniff", response.Headers.GetValues("X-Content-Type-Options").Single());
        Assert.Equal("DENY", response.Headers.GetValues("X-Frame-Options").Single());
    }

    [Fact]
    public async Task Api_answers_carry_nosniff_and_no_store()
    {
        using var response = await _server.Client.GetAsync("/api/detectors");
        Assert.Equal("nosniff", response.Headers.GetValues("X-Content-Type-Options").Single());
        Assert.True(response.Headers.CacheControl?.NoStore);
    }

    private async Task<(string?, string?)> RuleOf(string path)
    {
        var (status, _, body) = await _server.SendAsync(HttpMethod.Get, path);
        Assert.Equal(400, status);
        return (body!.Value.GetProperty("parameter").GetString(), body.Value.GetProperty("rule").GetString());
    }
}
