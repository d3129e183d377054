using System.Globalization;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using AnomalyVae.Api;
using AnomalyVae.Storage;
using AnomalyVae.Streaming;
using AnomalyVae.Tests;
using AnomalyVae.Training;
using AnomalyVae.Training.Engine;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace AnomalyVae.IntegrationTests.Api;

/// <summary>One seeded anomaly row, as the tests expect to read it back.</summary>
public sealed record SeededAnomaly(long Id, string Detector, string Entity, DateTimeOffset DetectedAt, double Score);

/// <summary>Seeds anomaly rows straight into the table (as the service would write them).</summary>
internal static class AnomalySeed
{
    public static readonly string[] Detectors = ["sensors", "payments"];

    /// <summary>
    /// <paramref name="count"/> rows of <paramref name="detectors"/> spread over the last hours, entities m0..m4, a tie in
    /// detected_at every 10 rows (so ordering must fall back to id), largest contribution first.
    /// </summary>
    public static async Task<List<SeededAnomaly>> InsertAsync(
        string connectionString, int count, string[] detectors, DateTimeOffset newest, string topic = "events", CancellationToken cancellationToken = default)
    {
        var rows = new List<SeededAnomaly>();
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync(cancellationToken);
        for (var i = 0; i < count; i++)
        {
            var detector = detectors[i % detectors.Length];
            var entity = $"m{i % 5}";
            var minutes = i % 10 == 9 ? i - 1 : i; // rows 8 and 9 (18 and 19, ...) share a time
            var detectedAt = newest.AddMinutes(-3 * minutes);
            var score = 20 + (i * 7 % 31) + 0.25;
            var contributions = new[]
            {
                ("temperature", score * 0.6), ("vibration", score * 0.25), ("pressure", score * 0.1), ("rpm", score * 0.05),
            };
            await using var command = new NpgsqlCommand(
                """
                INSERT INTO anomalies (detector, topic, "partition", "offset", entity, event_time, detected_at, score, p_value, threshold, model_version, contributions, event)
                VALUES ($1, $2, 0, $3, $4, $5, $5, $6, 0.001, 18.5, 'v-seed', $7::jsonb, $8::jsonb)
                RETURNING id
                """, connection);
            command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = detector });
            command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = topic });
            command.Parameters.Add(new NpgsqlParameter<long> { TypedValue = Random.Shared.NextInt64(0, long.MaxValue / 2) });
            command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = entity });
            command.Parameters.Add(new NpgsqlParameter<DateTime> { TypedValue = detectedAt.UtcDateTime });
            command.Parameters.Add(new NpgsqlParameter<double> { TypedValue = score });
            command.Parameters.Add(new NpgsqlParameter<string>
            {
                TypedValue = JsonSerializer.Serialize(contributions.Select(c => new { feature = c.Item1, score = c.Item2 })),
            });
            command.Parameters.Add(new NpgsqlParameter<string>
            {
                TypedValue = JsonSerializer.Serialize(new { machine_id = entity, temperature = 90 + i, vibration = 0.5, ts = detectedAt }),
            });
            var id = (long)(await command.ExecuteScalarAsync(cancellationToken))!;
            rows.Add(new SeededAnomaly(id, detector, entity, Truncate(detectedAt), score));
        }
        return rows;
    }

    /// <summary>
    /// Groups the seeded anomalies into incidents as serve would have (one per detector and entity; m0's closed, the
    /// others open) and points each anomaly at its incident: the data the incident views read.
    /// </summary>
    public static async Task GroupIntoIncidentsAsync(string connectionString, CancellationToken cancellationToken = default)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync(cancellationToken);
        await using var command = new NpgsqlCommand(
            """
            INSERT INTO incidents (detector, entity, first_anomaly_id, first_at, last_at, anomaly_count, peak_score, min_p_value,
                                   peak_anomaly_id, feature_scores, closed_at)
            SELECT detector, entity, min(id), min(event_time), max(event_time), count(*), max(score), min(p_value),
                   (array_agg(id ORDER BY score DESC))[1],
                   jsonb_build_object('temperature', sum(score * 0.6), 'vibration', sum(score * 0.25), 'pressure', sum(score * 0.1)),
                   CASE WHEN entity = 'm0' THEN max(event_time) + interval '5 minutes' END
            FROM anomalies GROUP BY detector, entity;
            UPDATE anomalies a SET incident_id = i.id FROM incidents i WHERE i.detector = a.detector AND i.entity = a.entity;
            """, connection);
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    public static async Task<long> CountAsync(string connectionString, CancellationToken cancellationToken = default)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync(cancellationToken);
        await using var command = new NpgsqlCommand("SELECT count(*) FROM anomalies", connection);
        return (long)(await command.ExecuteScalarAsync(cancellationToken))!;
    }

    public static async Task MigrateAsync(string connectionString, CancellationToken cancellationToken = default)
    {
        await using var dataSource = NpgsqlDataSource.Create(connectionString);
        await new SchemaMigrator(dataSource).MigrateAsync(cancellationToken);
    }

    /// <summary>The newest-first order the API promises: detected_at desc, then id desc.</summary>
    public static IEnumerable<SeededAnomaly> Ordered(IEnumerable<SeededAnomaly> rows) =>
        rows.OrderByDescending(r => r.DetectedAt).ThenByDescending(r => r.Id);

    // PostgreSQL keeps microseconds.
    private static DateTimeOffset Truncate(DateTimeOffset time) => new(time.UtcTicks - time.UtcTicks % 10, TimeSpan.Zero);
}

/// <summary>The API hosted in-process by <see cref="ApiHost"/> on a free loopback port, with a client for it.</summary>
public sealed class ApiServer : IAsyncDisposable
{
    private readonly WebApplication _app;

    private ApiServer(WebApplication app, string baseAddress)
    {
        _app = app;
        BaseAddress = baseAddress;
        Client = new HttpClient { BaseAddress = new Uri(baseAddress), Timeout = TimeSpan.FromSeconds(30) };
    }

    public string BaseAddress { get; }

    public HttpClient Client { get; }

    public static async Task<ApiServer> StartAsync(string connectionString, string[] keys, bool requireKeyForReads = false, CancellationToken cancellationToken = default) =>
        await StartAsync(connectionString, keys, new Dictionary<string, string?> { ["Api:RequireKeyForReads"] = requireKeyForReads ? "true" : "false" }, null, cancellationToken);

    /// <summary>Starts the API with <paramref name="settings"/> on top of the test defaults; logs go to <paramref name="logs"/> when given.</summary>
    public static async Task<ApiServer> StartAsync(
        string connectionString, string[] keys, IDictionary<string, string?> settings, LogCapture? logs, CancellationToken cancellationToken = default)
    {
        var all = new Dictionary<string, string?>
        {
            [AnomalyApi.ConnectionStringKey] = connectionString,
            ["Api:Host"] = "127.0.0.1",
            ["Api:Port"] = "0",
            ["Logging:LogLevel:Default"] = logs is null ? "Warning" : "Information",
        };
        for (var i = 0; i < keys.Length; i++)
            all[$"Api:Keys:{i}"] = keys[i];
        foreach (var (key, value) in settings)
            all[key] = value;
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(all).Build();
        var app = ApiHost.Build(configuration, logs is null ? null : l => l.AddProvider(logs));
        var addresses = await ApiHost.StartAsync(app, cancellationToken);
        // Listening on every interface gives one address with "[::]" or "0.0.0.0"; the tests connect over loopback.
        var address = addresses.First().Replace("[::]", "127.0.0.1", StringComparison.Ordinal).Replace("0.0.0.0", "127.0.0.1", StringComparison.Ordinal);
        return new ApiServer(app, address);
    }

    public async Task<JsonElement> GetJsonAsync(string path, CancellationToken cancellationToken = default)
    {
        using var response = await Client.GetAsync(path, cancellationToken);
        var body = await response.Content.ReadAsStringAsync(cancellationToken);
        Assert.True(response.IsSuccessStatusCode, $"GET {path}: {(int)response.StatusCode} {body}");
        using var document = JsonDocument.Parse(body);
        return document.RootElement.Clone();
    }

    /// <summary>Sends a request and returns status, content type and parsed body (null when empty).</summary>
    public async Task<(int Status, string? ContentType, JsonElement? Body)> SendAsync(
        HttpMethod method, string path, object? json = null, string? apiKey = null, string? rawBody = null, CancellationToken cancellationToken = default)
    {
        var (status, contentType, body, response) = await SendFullAsync(method, path, json, apiKey, rawBody, cancellationToken: cancellationToken);
        response.Dispose();
        return (status, contentType, body);
    }

    /// <summary>As <see cref="SendAsync"/>, with the response headers, a raw body's media type and extra request headers.</summary>
    public async Task<(int Status, string? ContentType, JsonElement? Body, HttpResponseMessage Response)> SendFullAsync(
        HttpMethod method, string path, object? json = null, string? apiKey = null, string? rawBody = null, string rawMediaType = "application/json",
        IEnumerable<(string Name, string Value)>? headers = null, HttpContent? content = null, CancellationToken cancellationToken = default)
    {
        using var request = new HttpRequestMessage(method, path);
        if (apiKey is not null)
            request.Headers.Add(ApiOptions.KeyHeader, apiKey);
        foreach (var (name, value) in headers ?? [])
        {
            if (name.Equals("Host", StringComparison.OrdinalIgnoreCase))
                request.Headers.Host = value;
            else
                request.Headers.TryAddWithoutValidation(name, value);
        }
        if (content is not null)
            request.Content = content;
        else if (json is not null)
            request.Content = JsonContent.Create(json);
        else if (rawBody is not null)
            request.Content = new StringContent(rawBody, Encoding.UTF8, rawMediaType);
        var response = await Client.SendAsync(request, cancellationToken);
        var text = await response.Content.ReadAsStringAsync(cancellationToken);
        JsonElement? body = null;
        if (text.Length > 0)
        {
            using var document = JsonDocument.Parse(text);
            body = document.RootElement.Clone();
        }
        return ((int)response.StatusCode, response.Content.Headers.ContentType?.MediaType, body, response);
    }

    public async ValueTask DisposeAsync()
    {
        Client.Dispose();
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}

/// <summary>Two small, different AnomalyVae models and a windowed one (trained once per test run, in a second or two).</summary>
internal static class TinyModels
{
    private static readonly Lazy<(string Directory, string First, string Second)> s_models = new(Train);
    private static readonly Lazy<string> s_windowed = new(TrainWindowed);

    public static string First => s_models.Value.First;

    public static string Second => s_models.Value.Second;

    /// <summary>A windowed model: W = 4 events per machine_id, on the same features.</summary>
    public static string Windowed => s_windowed.Value;

    private static string TrainWindowed()
    {
        var directory = s_models.Value.Directory;
        var data = TrainingData(directory, "train-windowed.csv", seed: 4, machines: 8);
        var path = Path.Combine(directory, "model-windowed.onnx");
        Trainer.TrainWindowed(data, null, "machine_id", null, 4, new VaeTrainingOptions { Epochs = 2, Hidden = [8], Latent = 2, Threads = 1, Seed = 1 }).Save(path);
        return path;
    }

    /// <summary>400 rows of temperature, vibration and pressure; with <paramref name="machines"/> &gt; 0 a machine_id
    /// column cycling through that many machines first.</summary>
    private static string TrainingData(string directory, string name, int seed, int machines)
    {
        var data = Path.Combine(directory, name);
        var random = new Random(seed);
        var csv = new StringBuilder(machines > 0 ? "machine_id,temperature,vibration,pressure\n" : "temperature,vibration,pressure\n");
        for (var i = 0; i < 400; i++)
        {
            var t = 70 + 5 * random.NextDouble();
            if (machines > 0)
                csv.Append(CultureInfo.InvariantCulture, $"m{i % machines},");
            csv.Append(CultureInfo.InvariantCulture, $"{t:F3},{t * 0.01 + random.NextDouble() * 0.1:F4},{100 + random.NextDouble():F3}\n");
        }
        File.WriteAllText(data, csv.ToString());
        return data;
    }

    private static (string, string, string) Train()
    {
        var directory = Directory.CreateTempSubdirectory("avae-registry-").FullName;
        var data = TrainingData(directory, "train.csv", seed: 3, machines: 0);
        string TrainOne(int seed)
        {
            var path = Path.Combine(directory, $"model-{seed}.onnx");
            Trainer.Train(data, null, new VaeTrainingOptions { Epochs = 2, Hidden = [8], Latent = 2, Threads = 1, Seed = seed }).Save(path);
            return path;
        }
        return (directory, TrainOne(1), TrainOne(2));
    }
}
