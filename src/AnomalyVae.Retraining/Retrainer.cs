using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using AnomalyVae.Inference;
using AnomalyVae.Model;
using AnomalyVae.Storage;
using AnomalyVae.Training;
using AnomalyVae.Training.Engine;
using AnomalyVae.Training.Export;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace AnomalyVae.Retraining;

/// <summary>A retraining request that cannot run at all (unknown detector, bad trigger): nothing is recorded.</summary>
public sealed class RetrainingException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>What one retraining run decided and why.</summary>
/// <param name="Decision">promoted, rejected, failed or skipped (<see cref="Retrainer"/>'s constants).</param>
/// <param name="Reasons">The gate lines behind a promotion or rejection; the cause of a failure or skip.</param>
public sealed record RetrainOutcome(
    long? RunId,
    string Detector,
    string Trigger,
    string Decision,
    string? ActiveVersion,
    string? ChallengerVersion,
    IReadOnlyList<string> Reasons,
    IReadOnlyList<GateResult> Gates,
    int TrainingRows,
    int FalsePositivesAdded,
    ModelEvaluation? Challenger,
    ModelEvaluation? Active,
    SampleTruncation? Truncation = null,
    int SampleRows = 0,
    bool FromDriftWindow = false);

/// <summary>
/// Whether the training sample was cut off at the active model's threshold in a way that matters (PSI above the drift
/// threshold and a flag rate above target by 3 binomial standard deviations), and the challenger's Threshold: the
/// larger of SampleThreshold (from its validation rows) and RecentThreshold (the (1 − target) quantile on the
/// CalibrationRows recent events; null when not truncated or under 5 / target rows). See <see cref="Retrainer"/>.
/// </summary>
public sealed record SampleTruncation(
    double ActivePsi, double ActiveFlagRate, int Rows, bool Truncated, double SampleThreshold, double? RecentThreshold, double Threshold,
    int CalibrationRows);

/// <summary>
/// Retrains a detector's model on the sample serve keeps and promotes the challenger only when the gates pass. One
/// run per detector at a time (an advisory lock; a concurrent run is recorded as skipped). A drift-triggered run
/// trains on the drift window's sample rows only when <c>driftWindow</c> is given. The steps, that choice and the
/// truncated-sample correction: docs/retraining.md#retraining-recalibration-and-rollback.
/// </summary>
public sealed class Retrainer(
    NpgsqlDataSource dataSource, RetrainingGateOptions gates, VaeTrainingOptions? training = null, ILogger? logger = null,
    double driftThreshold = RetrainingOptions.DefaultDriftThreshold, TimeSpan? driftWindow = null)
{
    public const string Promoted = "promoted";
    public const string Rejected = "rejected";
    public const string Failed = "failed";
    public const string Skipped = "skipped";

    public const string Manual = "manual";
    public const string Schedule = "schedule";
    public const string Drift = "drift";

    internal static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    private readonly ModelRegistry _registry = new(dataSource);

    /// <summary>The SQL expression of a detector's retraining lock key ($1 = detector), shared by every process.</summary>
    public const string LockKeySql = "hashtextextended('anomalyvae.retrain:' || $1, 0)";

    /// <summary>Runs one retraining of <paramref name="detector"/>.</summary>
    /// <exception cref="RetrainingException">Invalid detector or trigger, or a detector with neither models nor samples.</exception>
    public async Task<RetrainOutcome> RunAsync(string detector, string trigger, CancellationToken cancellationToken = default)
    {
        if (!ModelRegistry.IsDetectorName(detector))
            throw new RetrainingException($"detector name '{detector}' is not valid: use 1-100 letters, digits, '.', '_' or '-'.");
        if (trigger is not (Manual or Schedule or Drift))
            throw new RetrainingException($"trigger must be '{Manual}', '{Schedule}' or '{Drift}', not '{trigger}'.");
        var problems = gates.Problems();
        if (problems.Count > 0)
            throw new RetrainingException(string.Join(" ", problems));

        // A session lock on a connection held for the whole run: a second run (another process, replica or cron
        // job) sees it taken and skips instead of training the same challenger twice.
        await using var lockConnection = await dataSource.OpenConnectionAsync(cancellationToken);
        if (!await TryLockAsync(lockConnection, detector, cancellationToken))
        {
            var reason = $"another retraining of '{detector}' holds the lock; this run did not train";
            long skipped = await InsertRunAsync(lockConnection, detector, trigger, null, cancellationToken);
            await FinishRunAsync(lockConnection, skipped, Skipped, null, [reason], new { }, CancellationToken.None);
            return new RetrainOutcome(skipped, detector, trigger, Skipped, null, null, [reason], [], 0, 0, null, null);
        }
        try
        {
            return await RunLockedAsync(lockConnection, detector, trigger, cancellationToken);
        }
        finally
        {
            await using var unlock = new NpgsqlCommand($"SELECT pg_advisory_unlock({LockKeySql})", lockConnection);
            unlock.Parameters.Add(new NpgsqlParameter<string> { TypedValue = detector });
            await unlock.ExecuteNonQueryAsync(CancellationToken.None);
        }
    }

    private async Task<RetrainOutcome> RunLockedAsync(NpgsqlConnection connection, string detector, string trigger, CancellationToken cancellationToken)
    {
        var active = await _registry.GetActiveAsync(detector, cancellationToken);
        var specSource = active?.Onnx ?? await NewestModelAsync(connection, detector, cancellationToken);
        var sample = await RetrainingData.TrainingSampleAsync(connection, detector, cancellationToken);
        if (specSource is null && sample.Count == 0)
            throw new RetrainingException($"unknown detector '{detector}': it has no registered model and no training sample.");
        int sampleRows = sample.Count;
        bool fromWindow = false;
        if (trigger == Drift && driftWindow is { } window)
        {
            // The reservoir spans about SampleSize / SampleRate normal events, mostly from before a recent shift; the
            // rows sampled within the drift window are the distribution that drifted. Too few of them: whole sample.
            var recentRows = await RetrainingData.TrainingSampleAsync(connection, detector, cancellationToken, window);
            if (recentRows.Count >= gates.MinTrainingRows)
                (sample, fromWindow) = (recentRows, true);
            logger?.LogInformation("Retraining {Detector} on drift: {Window} of {Rows} sample rows were sampled within {DriftWindow}; training on {Which}",
                detector, recentRows.Count, sampleRows, window, fromWindow ? "those" : "the whole sample");
        }

        long runId = await InsertRunAsync(connection, detector, trigger, active?.Version, cancellationToken);
        try
        {
            var trained = await RetrainAsync(connection, runId, detector, trigger, active, specSource, sample, cancellationToken);
            var outcome = trained with { SampleRows = sampleRows, FromDriftWindow = fromWindow };
            await FinishRunAsync(connection, runId, outcome.Decision, outcome.ChallengerVersion, outcome.Reasons, Metrics(outcome), cancellationToken);
            logger?.LogInformation("Retraining {Detector} ({Trigger}): {Decision}; {Reasons}", detector, trigger, outcome.Decision, string.Join("; ", outcome.Reasons));
            return outcome;
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            var reason = e is RetrainingException or ModelFormatException or ModelRegistryException or FeatureSpecException or CsvFormatException or ArgumentException
                ? e.Message
                : $"{e.GetType().Name}: {e.Message}";
            logger?.LogError(e, "Retraining {Detector} failed", detector);
            await FinishRunAsync(connection, runId, Failed, null, [reason], new { }, CancellationToken.None);
            return new RetrainOutcome(runId, detector, trigger, Failed, active?.Version, null, [reason], [], 0, 0, null, null);
        }
        catch (OperationCanceledException)
        {
            await FinishRunAsync(connection, runId, Failed, null, ["cancelled"], new { }, CancellationToken.None);
            throw;
        }
    }

    /// <summary>
    /// The challenger scores what the active model scores (its schema already carries its quantile maps). A file
    /// the engine cannot rebuild (no architecture: not written by `train`) scores the reconstruction probability.
    /// </summary>
    private static ScoreFunction ScoreFunctionOf(byte[] model, string detector)
    {
        try
        {
            return ModelFile.Read(model, $"{detector} reference model").Model.ScoreFunction;
        }
        catch (ModelFormatException)
        {
            return ScoreFunction.ReconstructionProbability;
        }
    }

    private async Task<RetrainOutcome> RetrainAsync(
        NpgsqlConnection connection, long runId, string detector, string trigger, ActiveModel? active, byte[]? specSource,
        List<SampleEvent> sample, CancellationToken cancellationToken)
    {
        if (specSource is null)
            throw new RetrainingException($"detector '{detector}' has no registered model to take the feature spec from; register one (anomalyvae models register).");
        using var reference = ModelBundle.Load(specSource, active is null ? $"{detector} (newest registered model)" : $"{detector} {active.Version}");
        var window = reference.Window;
        if (sample.Count == 0)
            throw new RetrainingException($"detector '{detector}' has no training sample yet: serve fills it while it scores (Retraining:SampleSize > 0).");

        var labelled = await RetrainingData.LabelledAsync(connection, detector, cancellationToken);
        var recent = await RetrainingData.RecentEventsAsync(connection, detector, withoutTruePositives: false, cancellationToken);
        // A windowed model scores windows: a labelled anomaly counts with the window history serve stored with it
        // (anomalies written before migration 0010 have none and are skipped, like such sample rows).
        var falsePositives = labelled.Where(l => !l.IsTruePositive).Select(l => l.Sample).ToList();

        // Rows the model in service could read: an event it could not decode was never scored, so never sampled;
        // this only guards against rows written by an older, different feature spec. A windowed model also needs the
        // row's window history (rows from before migration 0010 or from a per-event model have none).
        var trainingEvents = sample.Concat(falsePositives).ToList();
        var readable = RetrainingData.Decode(reference.Schema, window, trainingEvents);
        var rows = Enumerable.Range(0, trainingEvents.Count).Where(i => readable.Decoded[i]).ToList();
        int fpAdded = rows.Count(i => i >= sample.Count);
        if (window is not null && rows.Count < sample.Count)
        {
            logger?.LogInformation("Retraining {Detector}: {Skipped} of {Rows} sample rows have no stored window history (or do not decode) and are skipped",
                detector, sample.Count - rows.Count, sample.Count);
        }
        if (rows.Count < gates.MinTrainingRows)
        {
            var early = RetrainingGates.Evaluate(gates, rows.Count, null, null);
            return new RetrainOutcome(runId, detector, trigger, Rejected, active?.Version, null,
                [.. early.Select(g => g.ToString())], early, rows.Count, fpAdded, null, null);
        }

        // The challenger: the active model's spec (and window), refitted on the rows, trained with the default options.
        // A windowed challenger's schema is refitted on every step its training windows hold unmasked, as offline
        // training fits on every row.
        var spec = RetrainingData.SpecOf(reference.Schema);
        var names = spec.Features.Select(f => f.Name).ToArray();
        var fitEvents = rows.SelectMany(i => FitSteps(trainingEvents[i], window));
        var schema = FeatureSchema.Fit(spec, names, RetrainingData.Cells(spec, fitEvents));
        // A windowed challenger keeps the active model's feature encoding (vocabularies, binary tokens) and refits the
        // numeric centers and scales only: serve's per-entity window state is kept across a swap only between
        // versions of one encoding (docs/streaming.md, "Model swap"), so a promotion does not restart every window.
        if (window is not null)
            schema = RetrainingData.KeepEncoding(schema, reference.Schema);
        var options = (training ?? new VaeTrainingOptions()) with { Seed = (int)(runId % int.MaxValue), ScoreFunction = ScoreFunctionOf(specSource, detector) };
        double targetFpr = reference.Calibration.TargetFalsePositiveRate;
        TrainedModel trained;
        int trainingRows;
        if (window is null)
        {
            var decoded = RetrainingData.Decode(schema, [.. rows.Select(i => trainingEvents[i].Event)]);
            var table = decoded.Table(schema, [.. Enumerable.Range(0, rows.Count).Where(i => decoded.Decoded[i])]);
            trainingRows = table.RowCount;
            trained = await Task.Run(() => Trainer.Train(table, options, targetFpr, cancellationToken: cancellationToken), cancellationToken);
        }
        else
        {
            var decoded = RetrainingData.DecodeWindows(schema, window, [.. rows.Select(i => trainingEvents[i])], maskFlagged: true);
            var (windows, windowRows) = RetrainingData.TrainingWindows(schema, window, decoded,
                [.. Enumerable.Range(0, rows.Count).Where(i => decoded.Decoded[i])]);
            trainingRows = windowRows.Length;
            trained = await Task.Run(() => Trainer.TrainWindowed(windows, windowRows, options, targetFpr, cancellationToken: cancellationToken), cancellationToken);
        }
        var challengerBytes = trained.ToOnnx();
        var challenger = ModelBundle.Load(challengerBytes, $"{detector} challenger");
        SampleTruncation? truncation = null;
        var evaluationEvents = recent;
        try
        {
            if (active is not null)
            {
                var truePositives = labelled.Where(l => l.IsTruePositive).Select(l => Encoding.UTF8.GetString(l.Event)).ToHashSet(StringComparer.Ordinal);
                Calibration? recalibrated;
                (truncation, evaluationEvents, recalibrated) = CorrectForTruncation(reference, challenger, recent, truePositives, cancellationToken);
                if (recalibrated is not null)
                {
                    trained = trained with { Calibration = recalibrated };
                    challengerBytes = trained.ToOnnx();
                    challenger.Dispose();
                    challenger = ModelBundle.Load(challengerBytes, $"{detector} challenger");
                }
                logger?.LogInformation(
                    "Retraining {Detector}: active model on {Rows} recent events PSI {Psi:F3}, flag rate {FlagRate:P2}; sample truncated: {Truncated}; challenger threshold {Sample:G4} -> {Threshold:G4}",
                    detector, truncation.Rows, truncation.ActivePsi, truncation.ActiveFlagRate, truncation.Truncated, truncation.SampleThreshold, truncation.Threshold);
            }
        }
        catch
        {
            challenger.Dispose();
            throw;
        }
        using var challengerModel = challenger;

        var (challengerEval, activeEval) = Evaluate(challenger, active is null ? null : reference, evaluationEvents, labelled, cancellationToken);
        var results = RetrainingGates.Evaluate(gates, trainingRows, challengerEval, activeEval);
        bool promote = results.All(g => g.Passed);

        var registered = await _registry.RegisterAsync(detector, challengerBytes, $"retrain run {runId}", activate: false, cancellationToken);
        var evaluation = JsonSerializer.Serialize(new
        {
            retrain_run = runId,
            trigger,
            compared_with = active?.Version,
            truncation,
            challenger = challengerEval,
            active = activeEval,
            gates = results,
        }, Json);
        await _registry.SetEvaluationMetricsAsync(detector, registered.Version, evaluation, cancellationToken);
        if (promote)
            await _registry.ActivateAsync(detector, registered.Version, cancellationToken);
        return new RetrainOutcome(runId, detector, trigger, promote ? Promoted : Rejected, active?.Version, registered.Version,
            [.. results.Select(g => g.ToString())], results, trainingRows, fpAdded, challengerEval, activeEval, truncation);
    }

    /// <summary>The events a row contributes to the schema refit: the event, and for a windowed model the history
    /// steps its training window holds (flagged ones are masked when the model masks flagged history).</summary>
    private static IEnumerable<byte[]> FitSteps(SampleEvent row, WindowDefinition? window)
    {
        if (window is not null && row.History is { } history)
        {
            for (int k = Math.Max(0, history.Count - (window.Steps - 1)); k < history.Count; k++)
            {
                if (!(window.MaskFlaggedHistory && (row.HistoryFlagged?[k] ?? false)))
                    yield return history[k];
            }
        }
        yield return row.Event;
    }

    /// <summary>Decides whether the sample is truncated (see the remarks) and, when it is, the challenger's threshold
    /// from the calibration half of <paramref name="recent"/>; returns the events to evaluate on.</summary>
    private (SampleTruncation Truncation, List<SampleEvent> Evaluation, Calibration? Recalibrated) CorrectForTruncation(
        ModelBundle active, ModelBundle challenger, List<SampleEvent> recent, HashSet<string> truePositives, CancellationToken cancellationToken)
    {
        double alpha = challenger.Calibration.TargetFalsePositiveRate;
        double sampleThreshold = challenger.Calibration.Threshold;
        var scores = ScoreDecodable(active, recent, cancellationToken);
        int n = scores.Length;
        double psi = 0, flagRate = 0;
        bool truncated = false;
        if (n > 0)
        {
            var edges = ScoreDrift.Edges(active.Calibration);
            var bins = new long[ScoreDrift.BinCount];
            int flagged = 0;
            foreach (var score in scores)
            {
                bins[ScoreDrift.BinOf(edges, score)]++;
                flagged += score > active.Calibration.Threshold ? 1 : 0;
            }
            psi = ScoreDrift.PopulationStabilityIndex(bins);
            flagRate = (double)flagged / n;
            double expected = n * active.Calibration.TargetFalsePositiveRate;
            truncated = psi > driftThreshold && flagged > expected + (3 * Math.Sqrt(expected * (1 - active.Calibration.TargetFalsePositiveRate)));
        }
        var calibration = new List<SampleEvent>();
        var evaluation = new List<SampleEvent>();
        for (int i = 0; i < recent.Count; i++)
        {
            if (i % 2 == 1)
                evaluation.Add(recent[i]);
            else if (!truePositives.Contains(Encoding.UTF8.GetString(recent[i].Event)))
                calibration.Add(recent[i]);
        }
        var calibrationScores = truncated ? ScoreDecodable(challenger, calibration, cancellationToken) : [];
        if (!truncated || calibrationScores.Length < Math.Ceiling(5 / alpha))
            return (new SampleTruncation(psi, flagRate, n, truncated, sampleThreshold, null, sampleThreshold, calibrationScores.Length), recent, null);
        // The whole calibration (knots, tail, p-values, drift bins), not only the threshold, comes from the calibration
        // half: the validation rows' quantiles are all cut off at the old threshold, so bins fitted on them would report
        // the live stream as drifting from the promoted model at once.
        var recalibrated = Calibration.Fit([.. calibrationScores.Select(s => (double)s)], alpha);
        double recentThreshold = recalibrated.Threshold;
        if (sampleThreshold > recentThreshold)
            recalibrated = recalibrated.WithThreshold(sampleThreshold, alpha);
        return (new SampleTruncation(psi, flagRate, n, true, sampleThreshold, recentThreshold, recalibrated.Threshold, calibrationScores.Length), evaluation, recalibrated);
    }

    private static float[] ScoreDecodable(ModelBundle model, List<SampleEvent> events, CancellationToken cancellationToken)
    {
        var decoded = RetrainingData.Decode(model.Schema, model.Window, events);
        var rows = Enumerable.Range(0, events.Count).Where(i => decoded.Decoded[i]).ToList();
        return decoded.Score(model, rows, cancellationToken);
    }

    /// <summary>Scores the recent events and the labelled anomalies with both models, on the events both can decode.</summary>
    private static (ModelEvaluation Challenger, ModelEvaluation? Active) Evaluate(
        ModelBundle challenger, ModelBundle? active, List<SampleEvent> recent, List<LabelledEvent> labelled, CancellationToken cancellationToken)
    {
        var labelledEvents = labelled.Select(l => l.Sample).ToList();
        var recentC = RetrainingData.Decode(challenger.Schema, challenger.Window, recent);
        var labelC = RetrainingData.Decode(challenger.Schema, challenger.Window, labelledEvents);
        var recentA = active is null ? null : RetrainingData.Decode(active.Schema, active.Window, recent);
        var labelA = active is null ? null : RetrainingData.Decode(active.Schema, active.Window, labelledEvents);
        var recentRows = Enumerable.Range(0, recent.Count).Where(i => recentC.Decoded[i] && (recentA?.Decoded[i] ?? true)).ToList();
        var labelRows = Enumerable.Range(0, labelled.Count).Where(i => labelC.Decoded[i] && (labelA?.Decoded[i] ?? true)).ToList();
        var truth = labelRows.Select(i => labelled[i].IsTruePositive).ToArray();

        var c = EvaluateOne(challenger, recentC, labelC, recentRows, labelRows, truth, cancellationToken);
        var a = active is null ? null : EvaluateOne(active, recentA!, labelA!, recentRows, labelRows, truth, cancellationToken);
        return (c, a);
    }

    private static ModelEvaluation EvaluateOne(
        ModelBundle model, DecodedEvents recent, DecodedEvents labelled, List<int> recentRows, List<int> labelRows, bool[] truth,
        CancellationToken cancellationToken)
    {
        var scores = recent.Score(model, recentRows, cancellationToken);
        double threshold = model.Calibration.Threshold;
        int flagged = 0;
        double sum = 0, nll = 0;
        var perEvent = new double[scores.Length];
        for (int i = 0; i < scores.Length; i++)
        {
            flagged += scores[i] > threshold ? 1 : 0;
            sum += scores[i];
            perEvent[i] = RetrainingGates.ComparableNll(scores[i], model.Schema, recent.EventMask(recentRows[i]), recent.EventX(recentRows[i]));
            nll += perEvent[i];
        }
        int n = scores.Length;

        var labelScores = labelled.Score(model, labelRows, cancellationToken);
        int tp = 0, fp = 0, positives = truth.Count(t => t);
        for (int i = 0; i < labelScores.Length; i++)
        {
            if (labelScores[i] > threshold)
            {
                if (truth[i])
                    tp++;
                else
                    fp++;
            }
        }
        return new ModelEvaluation(
            model.Version, threshold, model.Calibration.TargetFalsePositiveRate, n,
            n == 0 ? double.NaN : (double)flagged / n,
            n == 0 ? double.NaN : sum / n,
            n == 0 ? double.NaN : nll / n,
            RetrainingGates.TrimmedMean(perEvent),
            model.Schema.Count,
            positives, truth.Length - positives,
            tp + fp == 0 ? null : (double)tp / (tp + fp),
            positives == 0 ? null : (double)tp / positives);
    }

    private static object Metrics(RetrainOutcome outcome) => new
    {
        training_rows = outcome.TrainingRows,
        sample_rows = outcome.SampleRows,
        from_drift_window = outcome.FromDriftWindow,
        false_positives_added = outcome.FalsePositivesAdded,
        challenger = outcome.Challenger,
        active = outcome.Active,
        truncation = outcome.Truncation,
        gates = outcome.Gates,
    };

    private static async Task<bool> TryLockAsync(NpgsqlConnection connection, string detector, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand($"SELECT pg_try_advisory_lock({LockKeySql})", connection);
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = detector });
        return await command.ExecuteScalarAsync(cancellationToken) is true;
    }

    private static async Task<byte[]?> NewestModelAsync(NpgsqlConnection connection, string detector, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand("SELECT onnx FROM models WHERE detector = $1 ORDER BY registered_at DESC, id DESC LIMIT 1", connection);
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = detector });
        return await command.ExecuteScalarAsync(cancellationToken) as byte[];
    }

    private static async Task<long> InsertRunAsync(NpgsqlConnection connection, string detector, string trigger, string? activeVersion, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(
            "INSERT INTO retrain_runs (detector, trigger, active_version) VALUES ($1, $2, $3) RETURNING id", connection);
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = detector });
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = trigger });
        command.Parameters.Add(new NpgsqlParameter { Value = (object?)activeVersion ?? DBNull.Value, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Text });
        return (long)(await command.ExecuteScalarAsync(cancellationToken))!;
    }

    private static async Task FinishRunAsync(
        NpgsqlConnection connection, long runId, string decision, string? challengerVersion, IReadOnlyList<string> reasons, object metrics,
        CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(
            """
            UPDATE retrain_runs SET finished_at = now(), decision = $2, challenger_version = $3, reasons = $4::jsonb, metrics = $5::jsonb
            WHERE id = $1
            """, connection);
        command.Parameters.Add(new NpgsqlParameter<long> { TypedValue = runId });
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = decision });
        command.Parameters.Add(new NpgsqlParameter { Value = (object?)challengerVersion ?? DBNull.Value, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Text });
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = JsonSerializer.Serialize(reasons, Json) });
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = JsonSerializer.Serialize(metrics, Json) });
        await command.ExecuteNonQueryAsync(cancellationToken);
    }
}
