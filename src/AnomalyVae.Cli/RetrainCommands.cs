using System.CommandLine;
using System.Globalization;
using AnomalyVae.Retraining;
using Microsoft.Extensions.Configuration;

namespace AnomalyVae.Cli;

/// <summary><c>retrain</c> and <c>recalibrate</c>: keep a detector's model fresh from the samples and labels in PostgreSQL.</summary>
internal static class RetrainCommands
{
    /// <summary>Exit code of a rejected challenger under --fail-on-reject.</summary>
    public const int RejectedExitCode = 3;

    public static Command Retrain()
    {
        var detector = new Option<string>("--detector") { Description = "The detector to retrain.", Required = true };
        var trigger = new Option<string>("--trigger")
        {
            Description = "Recorded in retrain_runs: manual (default), schedule (cron, timers) or drift.",
            DefaultValueFactory = _ => Retrainer.Manual,
        };
        trigger.AcceptOnlyFromAmong(Retrainer.Manual, Retrainer.Schedule, Retrainer.Drift);
        var failOnReject = new Option<bool>("--fail-on-reject") { Description = $"Exit {RejectedExitCode} when the gates reject the challenger (default: 0, the active model stays)." };
        var command = new Command("retrain",
            "Train a challenger on the detector's training sample, compare it with the active model on recent events, and promote it when the gates (Retraining:Gates) pass. " +
            $"Exit 0: promoted, rejected or skipped (another run holds the lock); {RejectedExitCode}: rejected with --fail-on-reject; 1: failed.")
        {
            detector, trigger, failOnReject, CliDatabase.ConnectionOption, CliDatabase.ConfigOption,
        };
        command.SetAction((ParseResult parse, CancellationToken cancellationToken) =>
        {
            var retraining = Retraining(parse);
            var gates = retraining.Gates;
            if (gates.Problems() is { Count: > 0 } problems)
                throw new CliException(string.Join(" ", problems));
            return CliDatabase.RunAsync(parse, async dataSource =>
            {
                RetrainOutcome outcome;
                try
                {
                    outcome = await new Retrainer(dataSource, gates, driftThreshold: retraining.DriftThreshold, driftWindow: retraining.DriftWindow).RunAsync(parse.GetValue(detector)!, parse.GetValue(trigger)!, cancellationToken);
                }
                catch (RetrainingException e)
                {
                    throw new CliException(e.Message);
                }
                Print(outcome);
                return outcome.Decision switch
                {
                    Retrainer.Failed => CliRun.Failure,
                    Retrainer.Rejected when parse.GetValue(failOnReject) => RejectedExitCode,
                    _ => 0,
                };
            }, cancellationToken);
        });
        return command;
    }

    public static Command Recalibrate()
    {
        var detector = new Option<string>("--detector") { Description = "The detector whose active model gets a new threshold.", Required = true };
        var fpr = new Option<double?>("--target-fpr") { Description = "Target false-positive rate on the sample (default: the active model's)." };
        var pass = new Option<double>("--fp-pass")
        {
            Description = "Share of labelled false positives that must pass (score at or below the new threshold).",
            DefaultValueFactory = _ => Recalibrator.DefaultFalsePositivePassShare,
        };
        var command = new Command("recalibrate",
            "Recompute the active model's threshold from its scores on recent events at the target false-positive rate, raised so that labelled false positives mostly pass; registers and activates the result as a new version.")
        {
            detector, fpr, pass, CliDatabase.ConnectionOption, CliDatabase.ConfigOption,
        };
        command.SetAction((ParseResult parse, CancellationToken cancellationToken) => CliDatabase.RunAsync(parse, async dataSource =>
        {
            RecalibrationOutcome r;
            try
            {
                r = await new Recalibrator(dataSource).RunAsync(parse.GetValue(detector)!, parse.GetValue(fpr), parse.GetValue(pass), cancellationToken);
            }
            catch (RetrainingException e)
            {
                throw new CliException(e.Message);
            }
            var o = Console.Out;
            o.WriteLine(r.NewVersion == r.OldVersion
                ? $"{r.Detector}: threshold unchanged at {N(r.OldThreshold)}; version {r.OldVersion} stays active"
                : $"{r.Detector}: threshold {N(r.OldThreshold)} -> {N(r.NewThreshold)}; version {r.NewVersion} is active ({r.OldVersion} retired)");
            o.WriteLine($"  target false-positive rate {P(r.TargetFalsePositiveRate)}: threshold at the sample's {N(1 - r.TargetFalsePositiveRate)} quantile {N(r.FprThreshold)}");
            o.WriteLine(r.FalsePositiveThreshold is { } fpThreshold
                ? $"  labelled false positives: {r.LabelledFalsePositives}; {P(r.FalsePositivePassShare)} of them pass at or below {N(fpThreshold)}"
                : "  labelled false positives: none");
            o.WriteLine($"  sample: {r.SampleRows} recent events; flagged {P(r.SampleFlagRateOld)} before, {P(r.SampleFlagRateNew)} after");
            o.WriteLine($"  false positives passing: {r.FalsePositivesPassingOld}/{r.LabelledFalsePositives} before, {r.FalsePositivesPassingNew}/{r.LabelledFalsePositives} after");
            o.WriteLine($"  true positives still flagged: {r.TruePositivesFlaggedNew}/{r.LabelledTruePositives}");
            return 0;
        }, cancellationToken));
        return command;
    }

    /// <summary>Section Retraining of this invocation's configuration (appsettings.json, environment, --config).</summary>
    private static RetrainingOptions Retraining(ParseResult parse)
    {
        var retraining = new RetrainingOptions();
        try
        {
            CliDatabase.Configuration(parse).GetSection("Retraining").Bind(retraining);
        }
        catch (InvalidOperationException e)
        {
            throw new CliException($"invalid configuration: {e.Message}");
        }
        return retraining;
    }

    private static void Print(RetrainOutcome r)
    {
        var o = Console.Out;
        o.WriteLine(r.Decision switch
        {
            Retrainer.Promoted => $"{r.Detector}: promoted challenger {r.ChallengerVersion} (was {r.ActiveVersion ?? "no active model"}) [{r.Trigger}, run {r.RunId}]",
            Retrainer.Rejected when r.ChallengerVersion is null => $"{r.Detector}: rejected before training; {r.ActiveVersion ?? "no model"} stays active [{r.Trigger}, run {r.RunId}]",
            Retrainer.Rejected => $"{r.Detector}: rejected challenger {r.ChallengerVersion} (registered as candidate); {r.ActiveVersion ?? "no model"} stays active [{r.Trigger}, run {r.RunId}]",
            Retrainer.Skipped => $"{r.Detector}: skipped [{r.Trigger}, run {r.RunId}]",
            _ => $"{r.Detector}: failed [{r.Trigger}, run {r.RunId}]",
        });
        if (r.Challenger is { } c)
        {
            o.WriteLine($"  training rows: {r.TrainingRows} ({r.FalsePositivesAdded} of them labelled false positives)"
                + (r.FromDriftWindow ? $"; the sample rows taken within Retraining:DriftWindow, of {r.SampleRows} in the sample" : ""));
            o.WriteLine($"  evaluated on {c.Rows} recent events and {c.LabelledTruePositives + c.LabelledFalsePositives} labelled anomalies");
            if (r.Truncation is { } t)
            {
                o.WriteLine($"  active model on {t.Rows} recent events: PSI {N(t.ActivePsi)}, flag rate {P(t.ActiveFlagRate)}; " + (t.RecentThreshold is { } q
                    ? $"sample truncated: challenger threshold {N(t.SampleThreshold)} -> {N(t.Threshold)} (recent quantile {N(q)} over {t.CalibrationRows} events; the other half evaluated)"
                    : t.Truncated ? $"sample truncated, but {t.CalibrationRows} calibration events are too few to correct the threshold" : "sample not truncated"));
            }
            o.WriteLine($"  {"",-22}{"active",14}{"challenger",14}");
            Row("threshold", r.Active?.Threshold, c.Threshold, N);
            Row("flag rate", r.Active?.FlagRate, c.FlagRate, P);
            Row("mean score", r.Active?.MeanScore, c.MeanScore, N);
            Row("held-out NLL (nats)", r.Active?.MeanNll, c.MeanNll, N);
            Row("  without top 5 %", r.Active?.TrimmedNll, c.TrimmedNll, N);
            Row("precision (labels)", r.Active?.Precision, c.Precision, N);
            Row("recall (labels)", r.Active?.Recall, c.Recall, N);
        }
        else if (r.TrainingRows > 0)
        {
            o.WriteLine($"  training rows: {r.TrainingRows}");
        }
        o.WriteLine(r.Decision is Retrainer.Promoted or Retrainer.Rejected ? "  gates:" : "  reason:");
        foreach (var reason in r.Reasons)
            o.WriteLine($"    {reason}");

        void Row(string name, double? active, double? challenger, Func<double, string> format) =>
            o.WriteLine($"  {name,-22}{(active is { } a ? format(a) : "-"),14}{(challenger is { } ch ? format(ch) : "-"),14}");
    }

    private static string N(double value) => value.ToString("G5", CultureInfo.InvariantCulture);

    private static string P(double value) => value.ToString("0.00%", CultureInfo.InvariantCulture);
}
