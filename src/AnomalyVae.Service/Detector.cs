using AnomalyVae.Features;
using AnomalyVae.Onnx;
using AnomalyVae.Scoring;
using Microsoft.Extensions.Logging;

namespace AnomalyVae.Service;

/// <summary>A detector ready to run: its options, its loaded model, its event decoder and its threshold.</summary>
public sealed class Detector : IDisposable
{
    private Detector(DetectorOptions options, ModelBundle model, EventDecoder decoder)
    {
        Options = options;
        Model = model;
        Decoder = decoder;
        Threshold = options.Threshold ?? model.Calibration.Threshold;
    }

    public DetectorOptions Options { get; }

    public string Name => Options.Name;

    public ModelBundle Model { get; }

    public EventDecoder Decoder { get; }

    /// <summary>Events scoring above this are anomalies (the override, else the model's calibrated threshold).</summary>
    public double Threshold { get; }

    /// <summary>Loads every detector's model; the first that fails stops start-up with an error naming the
    /// detector and the file (running with one model missing would silently not score its topic).</summary>
    public static IReadOnlyList<Detector> LoadAll(ServiceOptions options, ILogger logger)
    {
        var session = new OnnxSessionOptions
        {
            IntraOpThreads = options.Scoring.IntraOpThreads,
            CudaDeviceId = options.Scoring.UseCuda ? options.Scoring.CudaDeviceId : null,
        };
        var loaded = new List<Detector>();
        try
        {
            foreach (var d in options.Detectors)
            {
                loaded.Add(Load(d, options.Scoring, session, logger));
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

    private static Detector Load(DetectorOptions options, ScoringOptions scoring, OnnxSessionOptions session, ILogger logger)
    {
        string path = Path.GetFullPath(options.Model);
        ModelBundle model;
        try
        {
            model = ModelBundle.Load(path, session, logger);
        }
        catch (Exception e) when (e is ModelFormatException or OnnxRuntimeException)
        {
            throw new ServiceConfigurationException($"Detector '{options.Name}': cannot load model '{path}': {e.Message}", e);
        }
        try
        {
            var decoder = new EventDecoder(model.Schema, options.EntityField, options.TimestampField, scoring.MaxPayloadBytes);
            var detector = new Detector(options, model, decoder);
            logger.LogInformation(
                "Detector {Detector}: topic {Topic}, model {Model} version {Version} ({Features} features, {Provider}), threshold {Threshold}, dead letters to {DeadLetterTopic}",
                options.Name, options.Topic, path, model.Version, model.Schema.Count, model.Session.Provider, detector.Threshold,
                options.ResolvedDeadLetterTopic);
            return detector;
        }
        catch (ArgumentException e)
        {
            model.Dispose();
            throw new ServiceConfigurationException($"Detector '{options.Name}' (model '{path}'): {e.Message}", e);
        }
    }

    public void Dispose() => Model.Dispose();
}
