using AnomalyVae.Inference;
using AnomalyVae.Model;
using AnomalyVae.Storage;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.ML.OnnxRuntime;
using Npgsql;

namespace AnomalyVae.Streaming;

/// <summary>
/// Keeps the registry-backed detectors on their registry name's active version: loads it at start-up (a name without
/// one stops start-up), then follows activations by LISTEN plus a poll every <see cref="PollInterval"/>, loading new
/// versions off the scoring path. A version that does not load is reported (<see cref="Detector.ModelProblem"/>)
/// while the detector keeps the one it has. See docs/retraining.md#models-registry-hot-swap-rollback.
/// </summary>
public sealed class ModelRegistryFollower(
    DetectorSet detectors, ModelRegistry registry, NpgsqlDataSource dataSource, ServiceOptions options, ServiceMetrics metrics,
    ILogger<ModelRegistryFollower> logger) : BackgroundService
{
    /// <summary>Fallback poll of the active versions (one small query per registry-backed detector).</summary>
    public static readonly TimeSpan PollInterval = TimeSpan.FromSeconds(3);

    private static readonly TimeSpan ReconnectDelay = TimeSpan.FromSeconds(1);

    private readonly Detector[] _followed = [.. detectors.Detectors.Where(d => d.RegistryName is not null)];
    // The version that last failed to load per detector: not retried until the active version changes again.
    private readonly Dictionary<string, string> _failed = new(StringComparer.Ordinal);
    private readonly OnnxSessionOptions _session = Detector.SessionOptions(options.Scoring);

    public override async Task StartAsync(CancellationToken cancellationToken)
    {
        foreach (var detector in detectors.Detectors)
        {
            if (detector.RegistryName is not null)
                await LoadInitialAsync(detector, cancellationToken);
            metrics.SetModelVersion(detector.Name, detector.Current!.Version);
        }
        if (_followed.Length > 0)
            await base.StartAsync(cancellationToken);
    }

    private async Task LoadInitialAsync(Detector detector, CancellationToken cancellationToken)
    {
        string name = detector.RegistryName!;
        ActiveModel? active;
        try
        {
            active = await registry.GetActiveAsync(name, cancellationToken);
        }
        catch (NpgsqlException e)
        {
            throw new ServiceConfigurationException(
                $"Detector '{detector.Name}': cannot read model '{name}' from the model registry (Postgres:ConnectionString): {e.Message}", e);
        }
        if (active is null)
        {
            var registered = await registry.ListAsync(name, cancellationToken);
            string fix = registered.Count == 0
                ? $"register one: anomalyvae models register --detector {name} --file MODEL.onnx --activate"
                : $"activate one of its {registered.Count} registered version(s): anomalyvae models activate --detector {name} --version {registered[0].Version}";
            throw new ServiceConfigurationException(
                $"Detector '{detector.Name}': Detectors:N:Model '{name}' is not a model file, so it names a model in the registry, "
                + $"and the registry has no active model for '{name}'; {fix}");
        }
        try
        {
            var model = Load(detector, active);
            detector.Publish(model);
            logger.LogInformation(
                "Detector {Detector}: topic {Topic}, registry model {Registry} version {Version} ({Features} features, {Provider}), threshold {Threshold}, dead letters to {DeadLetterTopic}",
                detector.Name, detector.Options.Topic, name, model.Version, model.Bundle.Schema.Count, model.Bundle.Session.Provider, model.Threshold,
                detector.Options.ResolvedDeadLetterTopic);
        }
        catch (Exception e) when (e is ModelFormatException or OnnxRuntimeException or ArgumentException)
        {
            throw new ServiceConfigurationException(
                $"Detector '{detector.Name}': cannot load registry model '{name}' version {active.Version}: {e.Message} "
                + $"(activate a version that loads: anomalyvae models activate --detector {name} --version V)", e);
        }
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await using var connection = await dataSource.OpenConnectionAsync(stoppingToken);
                await using (var listen = new NpgsqlCommand($"LISTEN {ModelRegistry.NotifyChannel}", connection))
                    await listen.ExecuteNonQueryAsync(stoppingToken);
                // (Re)connected: anything activated while not listening is found here.
                await CheckAllAsync(stoppingToken);
                while (!stoppingToken.IsCancellationRequested)
                {
                    // Returns at a notification (an activation committed) or after the poll interval.
                    await connection.WaitAsync(PollInterval, stoppingToken);
                    await CheckAllAsync(stoppingToken);
                }
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                // Whatever went wrong, following must not stop the host (a BackgroundService that throws does): the
                // detectors keep scoring with the versions they have, and the next connection catches up.
                if (e is NpgsqlException or IOException or TimeoutException)
                    logger.LogWarning("Model registry: cannot follow activations ({Error}); reconnecting in {Delay}", e.Message, ReconnectDelay);
                else
                    logger.LogError(e, "Model registry: following activations failed; retrying in {Delay}", ReconnectDelay);
                try
                {
                    await Task.Delay(ReconnectDelay, stoppingToken);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
        }
    }

    private async Task CheckAllAsync(CancellationToken cancellationToken)
    {
        foreach (var detector in _followed)
            await CheckAsync(detector, cancellationToken);
    }

    /// <summary>Loads and publishes the registry's active version when it is not the one the detector has.</summary>
    private async Task CheckAsync(Detector detector, CancellationToken cancellationToken)
    {
        string name = detector.RegistryName!;
        string? version = await registry.GetActiveVersionAsync(name, cancellationToken);
        string? current = detector.Current?.Version;
        if (version is null || version == current)
        {
            // Nothing active (deactivated by hand): keep scoring with what we have. Back on our version: no problem left.
            if (version == current)
            {
                detector.ModelProblem = null;
                _failed.Remove(detector.Name);
            }
            return;
        }
        if (_failed.TryGetValue(detector.Name, out var failed) && failed == version)
            return;
        var active = await registry.GetActiveAsync(name, cancellationToken);
        if (active is null)
            return;
        DetectorModel model;
        try
        {
            // ONNX Runtime session creation can take a while: it happens here, never on the scoring path.
            model = await Task.Run(() => Load(detector, active), cancellationToken);
        }
        catch (Exception e) when (e is ModelFormatException or OnnxRuntimeException or ArgumentException)
        {
            _failed[detector.Name] = active.Version;
            detector.ModelProblem = $"active registry version {active.Version} does not load ({e.Message}); still scoring with version {current}";
            metrics.ModelLoadFailures.Add(1, new KeyValuePair<string, object?>("detector", detector.Name));
            logger.LogError("Detector {Detector}: registry model {Registry} version {Version} does not load, still scoring with version {Current}: {Error}",
                detector.Name, name, active.Version, current, e.Message);
            return;
        }
        detector.Publish(model);
        detector.ModelProblem = null;
        _failed.Remove(detector.Name);
        metrics.SetModelVersion(detector.Name, model.Version);
        logger.LogInformation("Detector {Detector}: registry model {Registry} version {Previous} -> {Version} (threshold {Threshold}); new batches score with it",
            detector.Name, name, current, model.Version, model.Threshold);
    }

    private DetectorModel Load(Detector detector, ActiveModel active)
    {
        var bundle = ModelBundle.Load(active.Onnx, $"registry model '{active.Detector}' version {active.Version}", _session, logger);
        return detector.Prepare(bundle, options.Scoring);
    }
}
