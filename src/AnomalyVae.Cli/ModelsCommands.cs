using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using AnomalyVae.Api;
using AnomalyVae.Storage;
using AnomalyVae.Streaming;

namespace AnomalyVae.Cli;

/// <summary><c>models register|activate|list</c>: the model registry in PostgreSQL.</summary>
internal static class ModelsCommands
{
    public static Command Create() =>
        new("models", "Register AnomalyVae models per detector and choose the active one (rollback = activate an older version).")
        {
            Register(), Activate(), List(),
        };

    private static Command Register()
    {
        var detector = new Option<string>("--detector") { Description = "Detector the model is for.", Required = true };
        var file = new Option<string>("--file") { Description = "The model file (.onnx written by anomalyvae train).", Required = true };
        var activate = new Option<bool>("--activate") { Description = "Also make it the detector's active model (retiring the current one)." };
        var command = new Command("register", "Validate a model file and add it to the registry as a candidate.")
        {
            detector, file, activate, CliDatabase.ConnectionOption, CliDatabase.ConfigOption,
        };
        command.SetAction((ParseResult parse, CancellationToken cancellationToken) =>
        {
            var path = CliRun.ExistingFile(parse.GetValue(file)!, "model file");
            return CliDatabase.RunAsync(parse, async dataSource =>
            {
                var model = await new ModelRegistry(dataSource).RegisterFileAsync(parse.GetValue(detector)!, path, parse.GetValue(activate), cancellationToken);
                Console.Out.WriteLine($"registered {model.Detector} version {model.Version} as {model.Status} ({model.SizeBytes} bytes, threshold {Number(model.Threshold)})");
                return 0;
            }, cancellationToken);
        });
        return command;
    }

    private static Command Activate()
    {
        var detector = new Option<string>("--detector") { Description = "The detector.", Required = true };
        var version = new Option<string>("--version") { Description = "The registered version to activate.", Required = true };
        var command = new Command("activate", "Make a registered version the detector's active model; the previous active one is retired.")
        {
            detector, version, CliDatabase.ConnectionOption, CliDatabase.ConfigOption,
        };
        command.SetAction((ParseResult parse, CancellationToken cancellationToken) => CliDatabase.RunAsync(parse, async dataSource =>
        {
            var activation = await new ModelRegistry(dataSource).ActivateAsync(parse.GetValue(detector)!, parse.GetValue(version)!, cancellationToken);
            var model = activation.Model;
            Console.Out.WriteLine(activation.PreviousVersion is null
                ? $"{model.Detector}: version {model.Version} is active (no previous active model)"
                : activation.PreviousVersion == model.Version
                    ? $"{model.Detector}: version {model.Version} was already active"
                    : $"{model.Detector}: version {model.Version} is active; {activation.PreviousVersion} retired");
            return 0;
        }, cancellationToken));
        return command;
    }

    private static Command List()
    {
        var detector = new Option<string?>("--detector") { Description = "Only this detector." };
        var format = new Option<string>("--format") { Description = "table or json.", DefaultValueFactory = _ => "table" };
        format.AcceptOnlyFromAmong("table", "json");
        var command = new Command("list", "List registered models, newest first.")
        {
            detector, format, CliDatabase.ConnectionOption, CliDatabase.ConfigOption,
        };
        command.SetAction((ParseResult parse, CancellationToken cancellationToken) => CliDatabase.RunAsync(parse, async dataSource =>
        {
            var models = await new ModelRegistry(dataSource).ListAsync(parse.GetValue(detector), cancellationToken);
            if (parse.GetValue(format) == "json")
            {
                Console.Out.WriteLine(JsonSerializer.Serialize(new { items = models }, AnomalyApi.Json));
                return 0;
            }
            if (models.Count == 0)
            {
                Console.Out.WriteLine("no models registered");
                return 0;
            }
            string[] header = ["DETECTOR", "VERSION", "STATUS", "CREATED (UTC)", "REGISTERED (UTC)", "THRESHOLD", "FEATURES", "WINDOW"];
            var rows = models.Select(m => new[]
            {
                m.Detector, m.Version, m.Status, Time(m.CreatedAt), Time(m.RegisteredAt), Number(m.Threshold),
                m.FeatureCount?.ToString(CultureInfo.InvariantCulture) ?? "-",
                m.Window is { } window ? $"{window.Steps.ToString(CultureInfo.InvariantCulture)} per {window.EntityField}" : "-",
            }).ToList();
            var widths = header.Select((h, i) => Math.Max(h.Length, rows.Max(r => r[i].Length))).ToArray();
            Console.Out.WriteLine(string.Join("  ", header.Select((h, i) => h.PadRight(widths[i]))).TrimEnd());
            foreach (var row in rows)
                Console.Out.WriteLine(string.Join("  ", row.Select((c, i) => c.PadRight(widths[i]))).TrimEnd());
            return 0;
        }, cancellationToken));
        return command;
    }

    private static string Time(DateTimeOffset time) => time.UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture);

    private static string Number(double? value) => value?.ToString("G6", CultureInfo.InvariantCulture) ?? "-";
}
