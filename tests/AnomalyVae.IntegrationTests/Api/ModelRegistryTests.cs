using System.Text.Json;
using AnomalyVae.Inference;
using AnomalyVae.IntegrationTests.Infrastructure;
using AnomalyVae.Model;
using AnomalyVae.Storage;
using Npgsql;

namespace AnomalyVae.IntegrationTests.Api;

/// <summary>The model registry on real PostgreSQL: register, activate (one active per detector), list, notify, HTTP.</summary>
[Collection(InfrastructureCollection.Name)]
public sealed class ModelRegistryTests(TestInfrastructure infrastructure) : IAsyncLifetime
{
    private string _connectionString = "";
    private NpgsqlDataSource _dataSource = null!;

    public async Task InitializeAsync()
    {
        _connectionString = await infrastructure.CreateDatabaseAsync("registry", CancellationToken.None);
        await AnomalySeed.MigrateAsync(_connectionString);
        _dataSource = NpgsqlDataSource.Create(_connectionString);
    }

    public async Task DisposeAsync()
    {
        await _dataSource.DisposeAsync();
        await infrastructure.DropDatabaseAsync(_connectionString, CancellationToken.None);
    }

    [Fact]
    public async Task Register_activate_rollback_keeps_one_active_model_and_notifies()
    {
        var registry = new ModelRegistry(_dataSource);
        await using var listener = new NpgsqlConnection(_connectionString);
        await listener.OpenAsync();
        var notified = new List<string>();
        listener.Notification += (_, e) => { lock (notified) notified.Add($"{e.Channel}:{e.Payload}"); };
        await using (var listen = new NpgsqlCommand($"LISTEN {ModelRegistry.NotifyChannel}", listener))
            await listen.ExecuteNonQueryAsync();

        var first = await registry.RegisterFileAsync("sensors", TinyModels.First, activate: false);
        Assert.Equal(ModelRegistry.Candidate, first.Status);
        using (var bundle = ModelBundle.Load(TinyModels.First))
        {
            Assert.Equal(bundle.Version, first.Version);
            Assert.Equal(bundle.Calibration.Threshold, first.Threshold!.Value, 9);
            Assert.Equal(3, first.FeatureCount);
        }
        Assert.Null(await registry.GetActiveAsync("sensors"));

        var second = await registry.RegisterFileAsync("sensors", TinyModels.Second, activate: true);
        Assert.Equal(ModelRegistry.Active, second.Status);
        Assert.NotEqual(first.Version, second.Version);
        var active = await registry.GetActiveAsync("sensors");
        Assert.Equal(second.Version, active!.Version);
        Assert.Equal(await File.ReadAllBytesAsync(TinyModels.Second), active.Onnx);

        // Rollback: the older version becomes active, the newer one retired.
        var rollback = await registry.ActivateAsync("sensors", first.Version);
        Assert.Equal(second.Version, rollback.PreviousVersion);
        var models = await registry.ListAsync("sensors");
        Assert.Equal(ModelRegistry.Active, models.Single(m => m.Version == first.Version).Status);
        Assert.Equal(ModelRegistry.Retired, models.Single(m => m.Version == second.Version).Status);
        Assert.Single(models, m => m.Status == ModelRegistry.Active);

        // The same model under another detector is a separate registration.
        await registry.RegisterFileAsync("pumps", TinyModels.First, activate: true);
        Assert.Equal(3, (await registry.ListAsync()).Count);
        Assert.Equal(first.Version, (await registry.GetActiveAsync("sensors"))!.Version);

        await listener.WaitAsync(TimeSpan.FromSeconds(5));
        for (var i = 0; i < 20 && notified.Count < 3; i++)
            await listener.WaitAsync(TimeSpan.FromMilliseconds(100));
        lock (notified)
            Assert.Equal(["anomalyvae_models:sensors", "anomalyvae_models:sensors", "anomalyvae_models:pumps"], notified);
    }

    [Fact]
    public async Task The_database_refuses_a_second_active_model_for_a_detector()
    {
        var registry = new ModelRegistry(_dataSource);
        await registry.RegisterFileAsync("fleet", TinyModels.First, activate: true);
        var second = await registry.RegisterFileAsync("fleet", TinyModels.Second, activate: false);
        await using var command = _dataSource.CreateCommand("UPDATE models SET status = 'active' WHERE id = $1");
        command.Parameters.Add(new NpgsqlParameter<long> { TypedValue = second.Id });
        var error = await Assert.ThrowsAsync<PostgresException>(() => command.ExecuteNonQueryAsync());
        Assert.Equal(PostgresErrorCodes.UniqueViolation, error.SqlState);
    }

    [Fact]
    public async Task Concurrent_activations_leave_exactly_one_active_model()
    {
        var registry = new ModelRegistry(_dataSource);
        var first = await registry.RegisterFileAsync("race", TinyModels.First, activate: false);
        var second = await registry.RegisterFileAsync("race", TinyModels.Second, activate: false);
        // Both versions activated many times at once: the per-detector lock serializes them, none fails.
        await Task.WhenAll(Enumerable.Range(0, 16).Select(i => registry.ActivateAsync("race", i % 2 == 0 ? first.Version : second.Version)));
        var models = await registry.ListAsync("race");
        Assert.Single(models, m => m.Status == ModelRegistry.Active);
        Assert.Single(models, m => m.Status == ModelRegistry.Retired);
    }

    [Fact]
    public async Task Bad_registrations_get_clear_errors()
    {
        var registry = new ModelRegistry(_dataSource);
        var notModel = Path.Combine(Path.GetTempPath(), $"not-a-model-{Guid.NewGuid():N}.onnx");
        await File.WriteAllTextAsync(notModel, "temperature,vibration\n1,2\n");
        try
        {
            var error = await Assert.ThrowsAsync<ModelFormatException>(() => registry.RegisterFileAsync("sensors", notModel, activate: false));
            Assert.Contains("not a valid ONNX model", error.Message);
        }
        finally
        {
            File.Delete(notModel);
        }
        await registry.RegisterFileAsync("dup", TinyModels.First, activate: false);
        var duplicate = await Assert.ThrowsAsync<ModelRegistryException>(() => registry.RegisterFileAsync("dup", TinyModels.First, activate: false));
        Assert.Contains("already has model version", duplicate.Message);
        await Assert.ThrowsAsync<ModelRegistryException>(() => registry.RegisterFileAsync("bad name'; --", TinyModels.First, activate: false));
        await Assert.ThrowsAsync<ModelNotFoundException>(() => registry.ActivateAsync("dup", "v-missing"));
        await Assert.ThrowsAsync<ModelRegistryException>(() => registry.RegisterFileAsync("dup", "/nonexistent/model.onnx", activate: false));
        Assert.Single(await registry.ListAsync("dup"));
    }

    [Fact]
    public async Task Http_lists_and_activates_models()
    {
        var registry = new ModelRegistry(_dataSource);
        var first = await registry.RegisterFileAsync("http", TinyModels.First, activate: true);
        var second = await registry.RegisterFileAsync("http", TinyModels.Second, activate: false);
        await using var server = await ApiServer.StartAsync(_connectionString, ["k1"]);

        var list = await server.GetJsonAsync("/api/models?detector=http");
        Assert.Equal([second.Version, first.Version], list.GetProperty("items").EnumerateArray().Select(m => m.GetProperty("version").GetString()!));
        Assert.Equal(JsonValueKind.Object, list.GetProperty("items")[0].GetProperty("training_metrics").ValueKind);

        Assert.Equal(401, (await server.SendAsync(HttpMethod.Post, $"/api/models/{second.Version}/activate?detector=http")).Status);
        var (status, _, body) = await server.SendAsync(HttpMethod.Post, $"/api/models/{second.Version}/activate", new { detector = "http" }, "k1");
        Assert.Equal(200, status);
        Assert.Equal("active", body!.Value.GetProperty("model").GetProperty("status").GetString());
        Assert.Equal(first.Version, body.Value.GetProperty("previous_version").GetString());
        Assert.Equal(second.Version, (await registry.GetActiveAsync("http"))!.Version);

        var detectors = await server.GetJsonAsync("/api/detectors");
        var http = detectors.GetProperty("items").EnumerateArray().Single(d => d.GetProperty("detector").GetString() == "http");
        Assert.Equal(second.Version, http.GetProperty("active_model_version").GetString());
        Assert.Equal(second.Threshold!.Value, http.GetProperty("threshold").GetDouble(), 9);
        Assert.Equal("active_model", http.GetProperty("threshold_source").GetString());

        Assert.Equal(400, (await server.SendAsync(HttpMethod.Post, $"/api/models/{second.Version}/activate", apiKey: "k1")).Status);
        Assert.Equal(400, (await server.SendAsync(HttpMethod.Post, $"/api/models/{second.Version}/activate?detector=" + Uri.EscapeDataString("http' OR '1'='1"), apiKey: "k1")).Status);
        Assert.Equal(400, (await server.SendAsync(HttpMethod.Post, $"/api/models/{second.Version}/activate?detector=http", new { detector = "other" }, "k1")).Status);
        Assert.Equal(404, (await server.SendAsync(HttpMethod.Post, $"/api/models/{Uri.EscapeDataString("v' OR '1'='1")}/activate?detector=http", apiKey: "k1")).Status);
        Assert.Equal(second.Version, (await registry.GetActiveAsync("http"))!.Version);
    }
}
