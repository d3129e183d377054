using System.Globalization;
using System.Text;
using AnomalyVae.IntegrationTests.Infrastructure;
using Npgsql;

namespace AnomalyVae.IntegrationTests.Serve;

/// <summary>
/// Secrets stay secret through a full run: <c>anomalyvae serve</c> and <c>anomalyvae api</c> as real processes take the
/// PostgreSQL password, API keys and the key-id secret from ANOMALYVAE_SECRETS_DIR files and the environment (never
/// from their JSON configuration), score a stream, answer /readyz, /metrics and API calls (wrong keys, a refused
/// database, feedback), log at Information, and none of the secrets appears in anything they wrote or answered.
/// </summary>
[Collection(InfrastructureCollection.Name)]
public sealed class SecretsTests(TestInfrastructure infrastructure, ServeFixture fixture) : IClassFixture<ServeFixture>
{
    private const string PostgresPassword = "pg-secret-3b9f1c";
    private const string ApiKey = "api-secret-71de0a";
    private const string NamedKey = "api-secret-named-4c2b";
    private const string KeyIdSecret = "key-id-secret-9e55";

    [Fact]
    public async Task Secrets_from_files_and_environment_never_reach_logs_readyz_metrics_or_answers()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        await using var stream = await ServeStream.CreateAsync(infrastructure, "secrets", partitions: 2, cts.Token);
        var (topic, deadLetters, database) = stream;
        var secrets = Directory.CreateDirectory(Path.Combine(fixture.Directory, $"secrets-{Guid.NewGuid():N}")).FullName;
        // The test cluster trusts local connections, so the password is sent nowhere but it is configured like a
        // real one: in a secret file, with the trailing newline editors leave.
        var withPassword = new NpgsqlConnectionStringBuilder(database) { Password = PostgresPassword }.ConnectionString;
        await File.WriteAllTextAsync(Path.Combine(secrets, "Postgres__ConnectionString"), withPassword + "\n", cts.Token);
        await File.WriteAllTextAsync(Path.Combine(secrets, "Api__NamedKeys__ops"), NamedKey + "\n", cts.Token);
        var environment = new Dictionary<string, string>
        {
            ["ANOMALYVAE_SECRETS_DIR"] = secrets,
            ["Api__Keys__0"] = ApiKey,
            ["Api__KeyIdSecret"] = KeyIdSecret,
        };

        var events = await ServeFixture.ProduceAsync(infrastructure, topic, ServeFixture.Events(2000, seed: 77), cts.Token);
        var servePort = ServeFixture.FreePort();
        var configuration = fixture.Configuration(infrastructure, topic, deadLetters, "", $"g-{Guid.NewGuid():N}", servePort);
        configuration.Remove("Postgres:ConnectionString");
        var configFile = await ServeProcess.WriteConfigAsync(fixture.Directory, configuration, cts.Token);
        Assert.DoesNotContain(PostgresPassword, await File.ReadAllTextAsync(configFile, cts.Token), StringComparison.Ordinal);

        var answers = new StringBuilder();
        using var serve = ServeProcess.StartCli(["serve", "--config", configFile], environment, "Information", servePort);
        await ServeFixture.WaitForOffsetsAsync(database, topic, events, cts.Token);
        using (var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{servePort}") })
        {
            var ready = await http.GetAsync("/readyz", cts.Token);
            answers.Append(await ready.Content.ReadAsStringAsync(cts.Token));
            Assert.True(ready.IsSuccessStatusCode, answers.ToString());
            answers.Append(await http.GetStringAsync("/metrics", cts.Token));
        }

        var apiPort = ServeFixture.FreePort();
        using var api = ServeProcess.StartCli(["api", "--port", apiPort.ToString(CultureInfo.InvariantCulture)], environment, "Information", apiPort);
        using (var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{apiPort}") })
        {
            var deadline = DateTime.UtcNow.AddMinutes(1);
            HttpResponseMessage? list = null;
            while (list is null)
            {
                try
                {
                    list = await http.GetAsync("/api/anomalies?limit=5", cts.Token);
                }
                catch (HttpRequestException) when (DateTime.UtcNow < deadline && !api.HasExited)
                {
                    await Task.Delay(200, cts.Token);
                }
            }
            var page = await list.Content.ReadAsStringAsync(cts.Token);
            Assert.True(list.IsSuccessStatusCode, page + api.Output);
            answers.Append(page);
            var id = System.Text.Json.JsonDocument.Parse(page).RootElement.GetProperty("items")[0].GetProperty("id").GetInt64();
            foreach (var (key, expected) in new[] { ("wrong-" + ApiKey, 401), (ApiKey, 201), (NamedKey, 201), ("", 401) })
            {
                using var request = new HttpRequestMessage(HttpMethod.Post, $"/api/anomalies/{id}/feedback")
                {
                    Content = new StringContent("{\"label\": \"true_positive\"}", Encoding.UTF8, "application/json"),
                };
                request.Headers.TryAddWithoutValidation("X-Api-Key", key);
                using var response = await http.SendAsync(request, cts.Token);
                var body = await response.Content.ReadAsStringAsync(cts.Token);
                Assert.True((int)response.StatusCode == expected, $"{(int)response.StatusCode} {body}");
                answers.Append(body);
            }
            answers.Append(await http.GetStringAsync($"/api/anomalies/{id}", cts.Token));
            Assert.Contains("api-key:ops", answers.ToString(), StringComparison.Ordinal);
        }

        await serve.SignalAsync("TERM", cts.Token);
        await api.SignalAsync("TERM", cts.Token);
        await serve.WaitForExitAsync(cts.Token);
        await api.WaitForExitAsync(cts.Token);

        var logs = serve.Output + "\n" + api.Output;
        Assert.Contains("anomalyvae api listening on", logs, StringComparison.Ordinal); // the logs were captured at all
        Assert.Contains("Failed API key attempt", logs, StringComparison.Ordinal);
        foreach (var secret in new[] { PostgresPassword, ApiKey, NamedKey, KeyIdSecret })
        {
            Assert.False(logs.Contains(secret, StringComparison.Ordinal), $"'{secret}' is in the logs:\n{Lines(logs, secret)}");
            Assert.False(answers.ToString().Contains(secret, StringComparison.Ordinal), $"'{secret}' is in an answer");
        }
    }

    private static string Lines(string text, string secret) =>
        string.Join('\n', text.Split('\n').Where(l => l.Contains(secret, StringComparison.Ordinal)).Take(5));
}
