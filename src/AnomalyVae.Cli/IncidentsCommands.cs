using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using AnomalyVae.Api;
using AnomalyVae.Storage;
using static AnomalyVae.Cli.AnomaliesCommands;

namespace AnomalyVae.Cli;

/// <summary>
/// <c>incidents list|show|label</c>: runs of anomalies of one entity, straight from PostgreSQL through
/// <see cref="IncidentQueries"/> (the code the HTTP API runs).
/// </summary>
internal static class IncidentsCommands
{
    public static Command Create() =>
        new("incidents", "Find incidents (runs of anomalies of one entity), inspect their anomalies, and label them.") { List(), Show(), Label() };

    private static Command List()
    {
        var detector = new Option<string?>("--detector") { Description = "Only this detector." };
        var entity = new Option<string?>("--entity") { Description = "Only this entity (e.g. machine id)." };
        var status = new Option<string?>("--status") { Description = "open or closed." };
        status.AcceptOnlyFromAmong(IncidentFilter.Open, IncidentFilter.Closed);
        var since = new Option<string?>("--since") { Description = "Active within this long (30s, 15m, 1h, 7d) or since an ISO 8601 time." };
        var until = new Option<string?>("--until") { Description = "Started before this ISO 8601 time." };
        var limit = new Option<int>("--limit")
        {
            Description = $"Rows per page, 1..{AnomalyFilter.MaxLimit}.",
            DefaultValueFactory = _ => AnomalyFilter.DefaultLimit,
        };
        var after = new Option<string?>("--after") { Description = "Continue after this cursor (printed when more rows exist)." };
        var format = new Option<string>("--format") { Description = "table or json.", DefaultValueFactory = _ => "table" };
        format.AcceptOnlyFromAmong("table", "json");
        var command = new Command("list", "List incidents, newest first.")
        {
            detector, entity, status, since, until, limit, after, format, CliDatabase.ConnectionOption, CliDatabase.ConfigOption,
        };
        command.SetAction((ParseResult parse, CancellationToken cancellationToken) =>
        {
            var count = parse.GetValue(limit);
            if (count < 1 || count > AnomalyFilter.MaxLimit)
                throw new CliException($"--limit must be from 1 to {AnomalyFilter.MaxLimit}; got {count}.");
            AnomalyCursor? cursor = null;
            if (parse.GetValue(after) is { } afterText && !AnomalyCursor.TryDecode(afterText, out cursor))
                throw new CliException($"--after '{afterText}' is not a cursor printed by this command.");
            var filter = new IncidentFilter(
                parse.GetValue(detector), parse.GetValue(entity), parse.GetValue(status),
                parse.GetValue(since) is { } s ? Since(s, DateTimeOffset.UtcNow) : null,
                parse.GetValue(until) is { } u ? Time(u, "--until") : null,
                count, cursor);
            return CliDatabase.RunAsync(parse, async dataSource =>
            {
                var page = await new IncidentQueries(dataSource).ListAsync(filter, cancellationToken);
                if (parse.GetValue(format) == "json")
                {
                    Console.Out.WriteLine(JsonSerializer.Serialize(new { items = page.Items, next = page.Next?.Encode() }, AnomalyApi.Json));
                }
                else
                {
                    WriteTable(page.Items, Console.Out);
                    if (page.Next is { } next)
                        Console.Error.WriteLine($"more: --after {next.Encode()}");
                }
                return 0;
            }, cancellationToken);
        });
        return command;
    }

    private static Command Show()
    {
        var id = new Argument<long>("id") { Description = "The incident's id." };
        var limit = new Option<int>("--limit")
        {
            Description = $"Anomalies listed, 1..{AnomalyFilter.MaxLimit} (newest first).",
            DefaultValueFactory = _ => 20,
        };
        var format = new Option<string>("--format") { Description = "text or json.", DefaultValueFactory = _ => "text" };
        format.AcceptOnlyFromAmong("text", "json");
        var command = new Command("show", "Show one incident: its span, count, peak, top features and its newest anomalies.")
        {
            id, limit, format, CliDatabase.ConnectionOption, CliDatabase.ConfigOption,
        };
        command.SetAction((ParseResult parse, CancellationToken cancellationToken) => CliDatabase.RunAsync(parse, async dataSource =>
        {
            var incidentId = parse.GetValue(id);
            var count = parse.GetValue(limit);
            if (count < 1 || count > AnomalyFilter.MaxLimit)
                throw new CliException($"--limit must be from 1 to {AnomalyFilter.MaxLimit}; got {count}.");
            var incident = await new IncidentQueries(dataSource).GetAsync(incidentId, cancellationToken)
                ?? throw new CliException($"there is no incident with id {incidentId}.");
            var anomalies = await new AnomalyQueries(dataSource).ListAsync(new AnomalyFilter(Limit: count, Incident: incidentId), cancellationToken);
            if (parse.GetValue(format) == "json")
            {
                Console.Out.WriteLine(JsonSerializer.Serialize(new { incident, anomalies = anomalies.Items, next = anomalies.Next?.Encode() },
                    new JsonSerializerOptions(AnomalyApi.Json) { WriteIndented = true }));
                return 0;
            }
            var i = incident;
            Console.Out.WriteLine($"incident {i.Id}  detector {i.Detector}  entity {i.Entity}  {i.Status}");
            Console.Out.WriteLine($"  from {Iso(i.FirstAt)} to {Iso(i.LastAt)}{(i.ClosedAt is { } c ? $", closed at {Iso(c)}" : "")}");
            Console.Out.WriteLine($"  {Invariant(i.AnomalyCount)} anomalies, peak score {Invariant(i.PeakScore)} (anomaly {Invariant(i.PeakAnomalyId)}), smallest p-value {Invariant(i.MinPValue)}");
            Console.Out.WriteLine("  features (scores summed over its anomalies):");
            var width = i.TopFeatures.Count == 0 ? 0 : i.TopFeatures.Max(f => f.Feature.Length);
            foreach (var f in i.TopFeatures)
                Console.Out.WriteLine($"    {f.Feature.PadRight(width)}  {f.Score.ToString("F3", CultureInfo.InvariantCulture),12}");
            Console.Out.WriteLine("  anomalies:");
            Write(anomalies, "table", Console.Out);
            if (anomalies.Next is { } next)
                Console.Error.WriteLine($"more: anomalyvae anomalies list --incident {i.Id} --after {next.Encode()}");
            return 0;
        }, cancellationToken));
        return command;
    }

    private static Command Label()
    {
        var id = new Argument<long>("id") { Description = "The incident's id." };
        var label = new Option<string>("--label") { Description = "true_positive or false_positive.", Required = true };
        label.AcceptOnlyFromAmong(FeedbackStore.TruePositive, FeedbackStore.FalsePositive);
        var note = new Option<string?>("--note") { Description = "Why (free text)." };
        var command = new Command("label", "Label every anomaly of an incident as a true or a false positive (source \"cli\").")
        {
            id, label, note, CliDatabase.ConnectionOption, CliDatabase.ConfigOption,
        };
        command.SetAction((ParseResult parse, CancellationToken cancellationToken) => CliDatabase.RunAsync(parse, async dataSource =>
        {
            var incidentId = parse.GetValue(id);
            var text = parse.GetValue(note);
            if (text is { Length: > FeedbackStore.MaxNoteLength })
                throw new CliException($"--note is longer than {FeedbackStore.MaxNoteLength} characters.");
            var labelled = await new FeedbackStore(dataSource).AddToIncidentAsync(incidentId, parse.GetValue(label)!, text, "cli", cancellationToken)
                ?? throw new CliException($"there is no incident with id {incidentId}.");
            Console.Out.WriteLine($"labelled {labelled} anomalies of incident {incidentId} {parse.GetValue(label)}");
            return 0;
        }, cancellationToken));
        return command;
    }

    private static void WriteTable(IReadOnlyList<IncidentSummary> items, TextWriter output)
    {
        if (items.Count == 0)
        {
            output.WriteLine("no incidents");
            return;
        }
        string[] header = ["ID", "STATUS", "DETECTOR", "ENTITY", "FIRST (UTC)", "LAST (UTC)", "ANOMALIES", "PEAK", "TOP FEATURES"];
        var rows = items.Select(i => new[]
        {
            Invariant(i.Id), i.Status, i.Detector, i.Entity, Short(i.FirstAt), Short(i.LastAt), Invariant(i.AnomalyCount),
            i.PeakScore.ToString("F2", CultureInfo.InvariantCulture),
            string.Join(" ", i.TopFeatures.Select(f => f.Feature)),
        }).ToList();
        var widths = header.Select((h, k) => Math.Max(h.Length, rows.Max(r => r[k].Length))).ToArray();
        output.WriteLine(string.Join("  ", header.Select((h, k) => h.PadRight(widths[k]))).TrimEnd());
        foreach (var row in rows)
            output.WriteLine(string.Join("  ", row.Select((c, k) => k is 0 or 6 or 7 ? c.PadLeft(widths[k]) : c.PadRight(widths[k]))).TrimEnd());
    }

    private static string Short(DateTimeOffset time) => time.UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture);
}
