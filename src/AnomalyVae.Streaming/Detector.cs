using AnomalyVae.Events;
using AnomalyVae.Inference;
using AnomalyVae.Model;
using Microsoft.Extensions.Logging;
using Microsoft.ML.OnnxRuntime;

namespace AnomalyVae.Streaming;

/// <summary>
/// One loaded version of a detector's model: the bundle (ONNX Runtime session), its event decoder and the threshold
/// in force with it. Shared by the detector while it is current and by the worker's batches bound to it; the session
/// is disposed when the last of them lets go, so a swap never pulls it from under a batch in flight.
/// </summary>
public sealed class DetectorModel
{
    private int _references = 1;

    internal DetectorModel(ModelBundle bundle, EventDecoder decoder, double threshold)
    {
        Bundle = bundle;
        Decoder = decoder;
        Threshold = threshold;
    }

    public ModelBundle Bundle { get; }

    public EventDecoder Decoder { get; }

    /// <summary>Events scoring above this are anomalies (Detectors:N:Threshold, else this model's calibrated threshold).</summary>
    public double Threshold { get; }

    public string Version => Bundle.Version;

    /// <summary>Takes a reference; false when the model was already released for good.</summary>
    internal bool TryAcquire()
    {
        int seen = Volatile.Read(ref _references);
        while (seen > 0)
        {
            int was = Interlocked.CompareExchange(ref _references, seen + 1, seen);
            if (was == seen)
                return true;
            seen = was;
        }
        return false;
    }

    internal void Release()
    {
        if (Interlocked.Decrement(ref _references) == 0)
            Bundle.Dispose();
    }
}

/// <summary>
/// A detector: its options and the model version it scores with now. A file-backed detector loads its model once at
/// start-up; a registry-backed one (<see cref="DetectorOptions.RegistryName"/>) loads the registry's active version
/// after the migrations and is handed each newly activated version by <see cref="ModelRegistryFollower"/>.
/// </summary>
public sealed class Detector : IDisposable
{
    private DetectorModel? _current;

    private Detector(DetectorOptions options)
    {
        Options = options;
        // Decided once: a file of that name appearing later must not turn a registry-backed detector into a file one.
        RegistryName = options.RegistryName;
    }

    public DetectorOptions Options { get; }

    public string Name => Options.Name;

    /// <summary>The registry name this detector follows; null when its model is a file.</summary>
    public string? RegistryName { get; }

    /// <summary>The model version batches start with from now on; null until a registry-backed detector is loaded. A batch
    /// scores with the version it was bound to (the worker's), which may still be the previous one.</summary>
    public DetectorModel? Current => Volatile.Read(ref _current);

    /// <summary>Why the registry's active version is not the one scoring (it did not load); null when it is.</summary>
    public string? ModelProblem { get; internal set; }

    /// <summary>A reference to the current model, for a batch to score with (release it when done); null before loading.</summary>
    internal DetectorModel? AcquireCurrent()
    {
        while (true)
        {
            var model = Current;
            if (model is null || model.TryAcquire())
                return model;
            // Swapped and released between the read and the acquire: read the newer one.
        }
    }

    /// <summary>Makes <paramref name="model"/> the version new batches bind to; the previous one is released (and disposed
    /// once no batch uses it). Returns the previous version, if any.</summary>
    internal string? Publish(DetectorModel model)
    {
        var previous = Interlocked.Exchange(ref _current, model);
        string? version = previous?.Version;
        previous?.Release();
        return version;
    }

    /// <summary>Creates every configured detector; file-backed models load now and the first that fails stops start-up
    /// with an error naming the detector and the file (running with one model missing would silently not score its topic).
    /// Registry-backed detectors stay unloaded until <see cref="ModelRegistryFollower"/> starts.</summary>
    public static IReadOnlyList<Detector> LoadAll(ServiceOptions options, ILogger logger)
    {
        var session = SessionOptions(options.Scoring);
        var loaded = new List<Detector>();
        try
        {
            foreach (var d in options.Detectors)
            {
                var detector = new Detector(d);
                loaded.Add(detector);
                if (detector.RegistryName is null)
                    LoadFile(detector, options.Scoring, session, logger);
            }
        }
        catch
        {
            foreach (var detector in loaded)
                detector.Dispose();
            throw;
        }
        return loaded;
    }

    internal static OnnxSessionOptions SessionOptions(ScoringOptions scoring) => new()
    {
        IntraOpThreads = scoring.IntraOpThreads,
        CudaDeviceId = scoring.UseCuda ? scoring.CudaDeviceId : null,
    };

    private static void LoadFile(Detector detector, ScoringOptions scoring, OnnxSessionOptions session, ILogger logger)
    {
        string path = Path.GetFullPath(detector.Options.Model);
        ModelBundle bundle;
        try
        {
            bundle = ModelBundle.Load(path, session, logger);
        }
        catch (Exception e) when (e is ModelFormatException or OnnxRuntimeException)
        {
            throw new ServiceConfigurationException($"Detector '{detector.Name}': cannot load model '{path}': {e.Message}", e);
        }
        DetectorModel model;
        try
        {
            model = detector.Prepare(bundle, scoring);
        }
        catch (ArgumentException e)
        {
            throw new ServiceConfigurationException($"Detector '{detector.Name}' (model '{path}'): {e.Message}", e);
        }
        detector.Publish(model);
        logger.LogInformation(
            "Detector {Detector}: topic {Topic}, model {Model} version {Version} ({Features} features, {Provider}), threshold {Threshold}, dead letters to {DeadLetterTopic}",
            detector.Name, detector.Options.Topic, path, bundle.Version, bundle.Schema.Count, bundle.Session.Provider, model.Threshold,
            detector.Options.ResolvedDeadLetterTopic);
    }

    /// <summary>Wraps a loaded bundle with this detector's decoder and threshold; disposes the bundle and throws
    /// <see cref="ArgumentException"/> when the detector's fields do not fit the model's schema.</summary>
    internal DetectorModel Prepare(ModelBundle bundle, ScoringOptions scoring)
    {
        try
        {
            // A windowed model scores each event in its entity's window: without an entity field there is no window
            // (start-up and registry swap alike).
            if (bundle.Window is { } window && string.IsNullOrEmpty(Options.EntityField))
            {
                throw new ArgumentException(
                    $"'{bundle.Source}' is a windowed model ({window.Steps} events per '{window.EntityField}'): set Detectors:N:EntityField to the " +
                    $"event field naming the entity (for this model most likely \"{window.EntityField}\"); docs/streaming.md, Windowed models.");
            }
            var decoder = new EventDecoder(bundle.Schema, Options.EntityField, Options.TimestampField, scoring.MaxPayloadBytes);
            return new DetectorModel(bundle, decoder, Options.Threshold ?? bundle.Calibration.Threshold);
        }
        catch
        {
            bundle.Dispose();
            throw;
        }
    }

    public void Dispose() => Interlocked.Exchange(ref _current, null)?.Release();
}
