using AnomalyVae.Inference;
using AnomalyVae.Model;
using AnomalyVae.Storage;
using AnomalyVae.Training.Export;
using Npgsql;

namespace AnomalyVae.Retraining;

/// <summary>What a recalibration changed.</summary>
/// <param name="NewVersion">The version now active (equal to <paramref name="OldVersion"/> when the threshold did not move).</param>
/// <param name="SampleRows">Recent events scored (labelled true positives left out).</param>
/// <param name="SampleFlagRateOld">Share of them above the old threshold.</param>
/// <param name="FalsePositivesPassingOld">Labelled false positives at or below the old threshold.</param>
public sealed record RecalibrationOutcome(
    string Detector,
    string OldVersion,
    string NewVersion,
    double OldThreshold,
    double NewThreshold,
    double TargetFalsePositiveRate,
    double FalsePositivePassShare,
    double FprThreshold,
    double? FalsePositiveThreshold,
    int SampleRows,
    double SampleFlagRateOld,
    double SampleFlagRateNew,
    int LabelledFalsePositives,
    int FalsePositivesPassingOld,
    int FalsePositivesPassingNew,
    int LabelledTruePositives,
    int TruePositivesFlaggedNew);

/// <summary>
/// Moves the active model's threshold using feedback: the larger of the (1 − α) quantile of its scores on the recent
/// events and a pass-share quantile of the labelled false positives' scores. It takes effect as a new model version
/// (same weights, new calibration), registered and activated. The sample and why: docs/retraining.md, "recalibrate".
/// </summary>
public sealed class Recalibrator(NpgsqlDataSource dataSource, int minSampleRows = 100)
{
    public const double DefaultFalsePositivePassShare = 0.9;

    private readonly ModelRegistry _registry = new(dataSource);

    /// <exception cref="RetrainingException">No active model, too few sample events, or an invalid argument.</exception>
    public async Task<RecalibrationOutcome> RunAsync(
        string detector, double? targetFalsePositiveRate = null, double falsePositivePassShare = DefaultFalsePositivePassShare,
        CancellationToken cancellationToken = default)
    {
        if (!ModelRegistry.IsDetectorName(detector))
            throw new RetrainingException($"detector name '{detector}' is not valid: use 1-100 letters, digits, '.', '_' or '-'.");
        if (targetFalsePositiveRate is { } rate && !(rate > 0 && rate < 1))
            throw new RetrainingException($"the target false-positive rate must be between 0 and 1 (exclusive), not {rate}.");
        if (!(falsePositivePassShare > 0 && falsePositivePassShare <= 1))
            throw new RetrainingException($"the false-positive pass share must be in (0, 1], not {falsePositivePassShare}.");

        var active = await _registry.GetActiveAsync(detector, cancellationToken)
            ?? throw new RetrainingException($"detector '{detector}' has no active model to recalibrate (anomalyvae models list).");
        using var bundle = ModelBundle.Load(active.Onnx, $"{detector} {active.Version}");
        double alpha = targetFalsePositiveRate ?? bundle.Calibration.TargetFalsePositiveRate;

        List<SampleEvent> recent;
        List<LabelledEvent> labelled;
        await using (var connection = await dataSource.OpenConnectionAsync(cancellationToken))
        {
            recent = await RetrainingData.RecentEventsAsync(connection, detector, withoutTruePositives: true, cancellationToken);
            labelled = await RetrainingData.LabelledAsync(connection, detector, cancellationToken);
        }
        // A windowed model scores each recent event's and labelled anomaly's window (its stored history + the event);
        // rows without a stored history (written before migration 0010) are left out.
        var recentSet = new HashSet<string>(recent.Select(e => System.Text.Encoding.UTF8.GetString(e.Event)), StringComparer.Ordinal);
        var falsePositives = labelled.Where(l => !l.IsTruePositive).Select(l => l.Sample).ToList();
        var truePositives = labelled.Where(l => l.IsTruePositive).Select(l => l.Sample).ToList();

        var sampleEvents = recent.Concat(falsePositives.Where(e => !recentSet.Contains(System.Text.Encoding.UTF8.GetString(e.Event)))).ToList();
        var sampleScores = Scores(bundle, sampleEvents, cancellationToken);
        if (sampleScores.Length < minSampleRows)
            throw new RetrainingException(
                $"detector '{detector}' has {sampleScores.Length} scorable recent events; recalibration needs at least {minSampleRows} (serve fills recent_events at Retraining:RecentRate).");
        var fpScores = Scores(bundle, falsePositives, cancellationToken);
        var tpScores = Scores(bundle, truePositives, cancellationToken);

        var sorted = sampleScores.Select(s => (double)s).Order().ToArray();
        double fprThreshold = RetrainingGates.Quantile(sorted, 1 - alpha);
        double? fpThreshold = fpScores.Length == 0 ? null : RetrainingGates.Quantile(fpScores.Select(s => (double)s).Order().ToArray(), falsePositivePassShare);
        double threshold = Math.Max(fprThreshold, fpThreshold ?? double.NegativeInfinity);
        double old = bundle.Calibration.Threshold;

        string newVersion = active.Version;
        if (threshold != old || alpha != bundle.Calibration.TargetFalsePositiveRate)
        {
            var contents = ModelFile.Read(active.Onnx, $"{detector} {active.Version}");
            var (model, schema, calibration, summary) = contents;
            if (summary is null)
                throw new RetrainingException($"model {active.Version} has no training summary; it cannot be re-exported (retrain it instead).");
            var bytes = VaeOnnxExport.ToBytes(contents.Members, schema, calibration.WithThreshold(threshold, alpha), summary, contents.Window);
            using (var recalibrated = ModelBundle.Load(bytes, $"{detector} recalibrated"))
                newVersion = recalibrated.Version;
            // The same threshold chosen before gives the same version: activate that registration again.
            var known = (await _registry.ListAsync(detector, cancellationToken)).Any(m => m.Version == newVersion);
            if (!known)
                await _registry.RegisterAsync(detector, bytes, $"recalibration of {active.Version}", activate: false, cancellationToken);
            await _registry.ActivateAsync(detector, newVersion, cancellationToken);
        }

        return new RecalibrationOutcome(
            detector, active.Version, newVersion, old, threshold, alpha, falsePositivePassShare, fprThreshold, fpThreshold,
            sampleScores.Length,
            Share(sampleScores, s => s > old), Share(sampleScores, s => s > threshold),
            fpScores.Length, fpScores.Count(s => s <= old), fpScores.Count(s => s <= threshold),
            tpScores.Length, tpScores.Count(s => s > threshold));
    }

    private static float[] Scores(ModelBundle bundle, List<SampleEvent> events, CancellationToken cancellationToken)
    {
        var decoded = RetrainingData.Decode(bundle.Schema, bundle.Window, events);
        var rows = Enumerable.Range(0, events.Count).Where(i => decoded.Decoded[i]).ToList();
        return decoded.Score(bundle, rows, cancellationToken);
    }

    private static double Share(float[] scores, Func<float, bool> predicate) =>
        scores.Length == 0 ? 0 : (double)scores.Count(predicate) / scores.Length;
}
