using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using AnomalyVae.Api;
using AnomalyVae.Model;
using AnomalyVae.Storage;
using AnomalyVae.Streaming;

namespace AnomalyVae.Cli;

/// <summary>
/// <c>anomalies list|show|label</c>: the API's reads (and feedback) straight from PostgreSQL through
/// <see cref="AnomalyQueries"/>, the same code the HTTP API runs.
/// </summary>
internal static partial class AnomaliesCommands
{
    public static Command Create() =>
        new("anomalies", "Find and inspect flagged anomalies in PostgreSQL, and label them.") { List(), Show(), Label() };

    private static Command List()
    {
        var detector = new Option<string?>("--detector") { Description = "Only this detector." };
        var entity = new Option<string?>("--entity") { Description = "Only this entity (e.g. machine id)." };
        var since = new Option<string?>("--since") { Description = "Detected within this long (30s, 15m, 1h, 7d) or since an ISO 8601 time." };
        var until = new Option<string?>("--until") { Description = "Detected before this ISO 8601 time." };
        var minScore = new Option<double?>("--min-score") { Description = "Only scores at or above this." };
        var incident = new Option<long?>("--incident") { Description = "Only the anomalies of this incident." };
        var limit = new Option<int>("--limit")
        {
            Description = $"Rows per page, 1..{AnomalyFilter.MaxLimit}.",
            DefaultValueFactory = _ => AnomalyFilter.DefaultLimit,
        };
        var after = new Option<string?>("--after") { Description = "Continue after this cursor (printed when more rows exist)." };
        var format = new Option<string>("--format") { Description = "table, json or csv.", DefaultValueFactory = _ => "table" };
        format.AcceptOnlyFromAmong("table", "json", "csv");
        var command = new Command("list", "List flagged anomalies, newest first.")
        {
            detector, entity, since, until, minScore, incident, limit, after, format, CliDatabase.ConnectionOption, CliDatabase.ConfigOption,
        };
        command.SetAction((ParseResult parse, CancellationToken cancellationToken) =>
        {
            var now = DateTimeOffset.UtcNow;
            var count = parse.GetValue(limit);
            if (count < 1 || count > AnomalyFilter.MaxLimit)
                throw new CliException($"--limit must be from 1 to {AnomalyFilter.MaxLimit}; got {count}.");
            if (parse.GetValue(minScore) is { } min && !double.IsFinite(min))
                throw new CliException("--min-score must be a finite number.");
            AnomalyCursor? cursor = null;
            if (parse.GetValue(after) is { } afterText && !AnomalyCursor.TryDecode(afterText, out cursor))
                throw new CliException($"--after '{afterText}' is not a cursor printed by this command.");
            var filter = new AnomalyFilter(
                parse.GetValue(detector), parse.GetValue(entity),
                parse.GetValue(since) is { } s ? Since(s, now) : null,
                parse.GetValue(until) is { } u ? Time(u, "--until") : null,
                parse.GetValue(minScore), count, cursor, parse.GetValue(incident));
            return CliDatabase.RunAsync(parse, async dataSource =>
            {
                var page = await new AnomalyQueries(dataSource).ListAsync(filter, cancellationToken);
                Write(page, parse.GetValue(format)!, Console.Out);
                if (page.Next is { } next && parse.GetValue(format) == "table")
                    Console.Error.WriteLine($"more: --after {next.Encode()}");
                return 0;
            }, cancellationToken);
        });
        return command;
    }

    private static Command Show()
    {
        var id = new Argument<long>("id") { Description = "The anomaly's id." };
        var format = new Option<string>("--format") { Description = "text or json.", DefaultValueFactory = _ => "text" };
        format.AcceptOnlyFromAmong("text", "json");
        var command = new Command("show", "Show one anomaly: scores, every feature's contribution, the event and its feedback.")
        {
            id, format, CliDatabase.ConnectionOption, CliDatabase.ConfigOption,
        };
        command.SetAction((ParseResult parse, CancellationToken cancellationToken) => CliDatabase.RunAsync(parse, async dataSource =>
        {
            var anomalyId = parse.GetValue(id);
            var detail = await new AnomalyQueries(dataSource).GetAsync(anomalyId, cancellationToken)
                ?? throw new CliException($"there is no anomaly with id {anomalyId}.");
            if (parse.GetValue(format) == "json")
                Console.Out.WriteLine(JsonSerializer.Serialize(detail, new JsonSerializerOptions(AnomalyApi.Json) { WriteIndented = true }));
            else
                WriteText(detail, Console.Out);
            return 0;
        }, cancellationToken));
        return command;
    }

    private static Command Label()
    {
        var id = new Argument<long>("id") { Description = "The anomaly's id." };
        var label = new Option<string>("--label") { Description = "true_positive or false_positive.", Required = true };
        label.AcceptOnlyFromAmong(FeedbackStore.TruePositive, FeedbackStore.FalsePositive);
        var note = new Option<string?>("--note") { Description = "Why (free text)." };
        var command = new Command("label", "Record whether an anomaly was a true or a false positive (stored with source \"cli\").")
        {
            id, label, note, CliDatabase.ConnectionOption, CliDatabase.ConfigOption,
        };
        command.SetAction((ParseResult parse, CancellationToken cancellationToken) => CliDatabase.RunAsync(parse, async dataSource =>
        {
            var anomalyId = parse.GetValue(id);
            var text = parse.GetValue(note);
            if (text is { Length: > FeedbackStore.MaxNoteLength })
                throw new CliException($"--note is longer than {FeedbackStore.MaxNoteLength} characters.");
            var stored = await new FeedbackStore(dataSource).AddAsync(anomalyId, parse.GetValue(label)!, text, "cli", cancellationToken)
                ?? throw new CliException($"there is no anomaly with id {anomalyId}.");
            Console.Out.WriteLine($"labelled anomaly {anomalyId} {stored.Label} (feedback {stored.Id})");
            return 0;
        }, cancellationToken));
        return command;
    }

    /// <summary>Writes a page as an aligned table, the API's JSON, or CSV (one row per anomaly, top features joined).</summary>
    internal static void Write(AnomalyPage page, string format, TextWriter output)
    {
        switch (format)
        {
            case "json":
                output.WriteLine(JsonSerializer.Serialize(new { items = page.Items, next = page.Next?.Encode() }, AnomalyApi.Json));
                break;
            case "csv":
                using (var csv = new CsvWriter(output, leaveOpen: true))
                {
                    csv.WriteRecord(["id", "detected_at", "detector", "entity", "event_time", "score", "p_value", "threshold", "model_version", "top_features"]);
                    foreach (var a in page.Items)
                    {
                        csv.WriteRecord([
                            Invariant(a.Id), Iso(a.DetectedAt), a.Detector, a.Entity ?? "", a.EventTime is { } t ? Iso(t) : "",
                            Invariant(a.Score), Invariant(a.PValue), Invariant(a.Threshold), a.ModelVersion, TopFeatures(a)]);
                    }
                    csv.Flush();
                }
                break;
            default:
                WriteTable(page.Items, output);
                break;
        }
    }

    private static void WriteTable(IReadOnlyList<AnomalySummary> items, TextWriter output)
    {
        if (items.Count == 0)
        {
            output.WriteLine("no anomalies");
            return;
        }
        string[] header = ["ID", "DETECTED (UTC)", "DETECTOR", "ENTITY", "SCORE", "P-VALUE", "TOP FEATURES"];
        var rows = items.Select(a => new[]
        {
            Invariant(a.Id), a.DetectedAt.UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture), a.Detector, a.Entity ?? "-",
            a.Score.ToString("F2", CultureInfo.InvariantCulture), a.PValue.ToString("G3", CultureInfo.InvariantCulture), TopFeatures(a),
        }).ToList();
        var widths = header.Select((h, i) => Math.Max(h.Length, rows.Max(r => r[i].Length))).ToArray();
        output.WriteLine(string.Join("  ", header.Select((h, i) => h.PadRight(widths[i]))).TrimEnd());
        foreach (var row in rows)
            output.WriteLine(string.Join("  ", row.Select((c, i) => i is 0 or 4 ? c.PadLeft(widths[i]) : c.PadRight(widths[i]))).TrimEnd());
    }

    private static void WriteText(AnomalyDetail d, TextWriter output)
    {
        output.WriteLine($"anomaly {d.Id}  detector {d.Detector}  entity {d.Entity ?? "-"}");
        output.WriteLine($"  detected   {Iso(d.DetectedAt)}   event time {(d.EventTime is { } t ? Iso(t) : "-")}");
        output.WriteLine($"  score      {Invariant(d.Score)}   threshold {Invariant(d.Threshold)}   p-value {Invariant(d.PValue)}");
        output.WriteLine($"  model      {d.ModelVersion}   source {d.Topic}[{d.Partition}]@{d.Offset}");
        output.WriteLine("  contributions:");
        var width = d.Contributions.Count == 0 ? 0 : d.Contributions.Max(c => c.Feature.Length);
        foreach (var c in d.Contributions)
            output.WriteLine($"    {c.Feature.PadRight(width)}  {c.Score.ToString("F3", CultureInfo.InvariantCulture),10}");
        output.WriteLine($"  event: {d.Event.GetRawText()}");
        foreach (var f in d.Feedback)
            output.WriteLine($"  feedback: {f.Label} by {f.Source} at {Iso(f.CreatedAt)}{(f.Note is null ? "" : $": {f.Note}")}");
    }

    private static string TopFeatures(AnomalySummary a) =>
        string.Join(" ", a.TopFeatures.Select(c => $"{c.Feature}={c.Score.ToString("F2", CultureInfo.InvariantCulture)}"));

    /// <summary>"1h"-style durations back from <paramref name="now"/>, or an absolute ISO 8601 time.</summary>
    internal static DateTimeOffset Since(string text, DateTimeOffset now)
    {
        var match = Duration().Match(text);
        if (!match.Success)
            return Time(text, "--since");
        var amount = long.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture);
        var span = match.Groups[2].Value switch
        {
            "s" => TimeSpan.FromSeconds(amount),
            "m" => TimeSpan.FromMinutes(amount),
            "h" => TimeSpan.FromHours(amount),
            _ => TimeSpan.FromDays(amount),
        };
        return span > now - DateTimeOffset.UnixEpoch ? DateTimeOffset.UnixEpoch : now - span;
    }

    internal static DateTimeOffset Time(string text, string option) =>
        AnomalyApi.TryParseIsoTime(text, out var time)
            ? time
            : throw new CliException($"{option} '{text}' is neither a duration (30s, 15m, 1h, 7d) nor an ISO 8601 time.");

    internal static string Iso(DateTimeOffset time) => time.UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ss.ffffffZ", CultureInfo.InvariantCulture);

    internal static string Invariant(double value) => value.ToString("R", CultureInfo.InvariantCulture);

    internal static string Invariant(long value) => value.ToString(CultureInfo.InvariantCulture);

    [GeneratedRegex("^([0-9]{1,6})([smhd])$", RegexOptions.CultureInvariant)]
    private static partial Regex Duration();
}
