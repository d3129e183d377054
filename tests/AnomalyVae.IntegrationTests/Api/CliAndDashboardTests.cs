using System.Diagnostics;
using System.Text.Json;
using AnomalyVae.IntegrationTests.Infrastructure;
using AnomalyVae.Storage;
using AnomalyVae.Streaming;
using AnomalyVae.Tests;
using Npgsql;

namespace AnomalyVae.IntegrationTests.Api;

/// <summary>
/// The CLI's reads and registry commands (the real anomalyvae.dll as a child process) and the dashboard in headless
/// Chromium, against one seeded database.
/// </summary>
[Collection(InfrastructureCollection.Name)]
public sealed class CliAndDashboardTests(CliAndDashboardTests.SeededDatabase database) : IClassFixture<CliAndDashboardTests.SeededDatabase>
{
    [Fact]
    public void Anomalies_list_prints_table_json_and_csv_of_the_filtered_rows()
    {
        var expected = AnomalySeed.Ordered(database.Seeded.Where(a => a.Detector == "sensors" && a.Entity == "m1")).Take(4).ToArray();
        string[] filter = ["anomalies", "list", "--detector", "sensors", "--entity", "m1", "--since", "1d", "--limit", "4", "--connection", database.ConnectionString];

        var table = Run([.. filter]);
        var lines = table.Stdout.TrimEnd().Split('\n');
        Assert.StartsWith("ID", lines[0]);
        Assert.Equal(expected.Length + 1, lines.Length);
        Assert.Equal(expected.Select(a => a.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)), lines[1..].Select(l => l.Trim().Split(' ')[0]));
        Assert.Contains("temperature=", lines[1]);
        Assert.Contains("more: --after ", table.Stderr);

        var json = Run([.. filter, "--format", "json"]);
        using var document = JsonDocument.Parse(json.Stdout);
        Assert.Equal(expected.Select(a => a.Id), document.RootElement.GetProperty("items").EnumerateArray().Select(i => i.GetProperty("id").GetInt64()));
        var next = document.RootElement.GetProperty("next").GetString()!;

        var csv = Run([.. filter, "--format", "csv"]);
        var rows = csv.Stdout.TrimEnd().Split('\n');
        Assert.Equal("id,detected_at,detector,entity,event_time,score,p_value,threshold,model_version,top_features", rows[0]);
        Assert.Equal(expected.Length + 1, rows.Length);
        Assert.All(rows[1..], r => Assert.Contains(",sensors,m1,", r));

        // The printed cursor continues where the page ended.
        var page2 = Run([.. filter, "--format", "json", "--after", next]);
        using var second = JsonDocument.Parse(page2.Stdout);
        var expected2 = AnomalySeed.Ordered(database.Seeded.Where(a => a.Detector == "sensors" && a.Entity == "m1")).Skip(4).Take(4).Select(a => a.Id);
        Assert.Equal(expected2, second.RootElement.GetProperty("items").EnumerateArray().Select(i => i.GetProperty("id").GetInt64()));
    }

    [Fact]
    public void Anomalies_show_and_errors()
    {
        var anomaly = database.Seeded[3];
        var show = Run("anomalies", "show", anomaly.Id.ToString(System.Globalization.CultureInfo.InvariantCulture), "--connection", database.ConnectionString);
        Assert.Contains($"anomaly {anomaly.Id}", show.Stdout);
        Assert.Contains("contributions:", show.Stdout);
        Assert.Contains("machine_id", show.Stdout);

        var missing = Run(expectedExit: 1, "anomalies", "show", "99999999", "--connection", database.ConnectionString);
        Assert.Equal("anomalyvae: error: there is no anomaly with id 99999999.", missing.Stderr.Trim());
        var badSince = Run(expectedExit: 1, "anomalies", "list", "--since", "yesterday", "--connection", database.ConnectionString);
        Assert.Contains("--since 'yesterday'", badSince.Stderr);
        var badFormat = Run(expectedExit: 2, "anomalies", "list", "--format", "xml", "--connection", database.ConnectionString);
        Assert.Contains("xml", badFormat.Stderr);
        var noDatabase = Run(expectedExit: 1, "anomalies", "list", "--connection", "Host=127.0.0.1;Port=1;Username=x;Timeout=2");
        Assert.Contains("cannot reach PostgreSQL", noDatabase.Stderr);
    }

    [Fact]
    public void Incidents_list_show_and_label()
    {
        var ofSensors = database.Seeded.Where(a => a.Detector == "sensors").GroupBy(a => a.Entity).ToDictionary(g => g.Key, g => g.Count());
        var json = Run("incidents", "list", "--detector", "sensors", "--format", "json", "--connection", database.ConnectionString);
        using var document = JsonDocument.Parse(json.Stdout);
        var items = document.RootElement.GetProperty("items").EnumerateArray().ToList();
        Assert.Equal(ofSensors.OrderBy(e => e.Key).Select(e => $"{e.Key}:{e.Value}"),
            items.Select(i => $"{i.GetProperty("entity").GetString()}:{i.GetProperty("anomaly_count").GetInt64()}").Order());
        var closed = Assert.Single(items, i => i.GetProperty("status").GetString() == "closed");
        Assert.Equal("m0", closed.GetProperty("entity").GetString());

        var open = Run("incidents", "list", "--detector", "sensors", "--status", "open", "--connection", database.ConnectionString);
        var lines = open.Stdout.TrimEnd().Split('\n');
        Assert.StartsWith("ID", lines[0]);
        Assert.Equal(ofSensors.Count - 1, lines.Length - 1);
        Assert.All(lines[1..], l => Assert.Contains(" open ", l));

        var id = closed.GetProperty("id").GetInt64().ToString(System.Globalization.CultureInfo.InvariantCulture);
        var show = Run("incidents", "show", id, "--connection", database.ConnectionString);
        Assert.Contains($"incident {id}  detector sensors  entity m0  closed", show.Stdout);
        Assert.Contains("temperature", show.Stdout);
        var listed = show.Stdout.Split("  anomalies:\n")[1].Split('\n', StringSplitOptions.RemoveEmptyEntries).Skip(1).ToList();
        Assert.Equal(ofSensors["m0"], listed.Count);
        Assert.All(listed, l => Assert.Matches(@"^\s*\d+ .* sensors +m0 ", l));

        var label = Run("incidents", "label", id, "--label", "false_positive", "--note", "maintenance", "--connection", database.ConnectionString);
        Assert.Equal($"labelled {ofSensors["m0"]} anomalies of incident {id} false_positive", label.Stdout.Trim());
        var missing = Run(expectedExit: 1, "incidents", "show", "99999999", "--connection", database.ConnectionString);
        Assert.Equal("anomalyvae: error: there is no incident with id 99999999.", missing.Stderr.Trim());
    }

    [Fact]
    public void Models_commands_register_activate_and_list()
    {
        var register = Run("models", "register", "--detector", "cli-detector", "--file", TinyModels.First, "--connection", database.ConnectionString);
        Assert.Contains("as candidate", register.Stdout);
        var list = Run("models", "list", "--detector", "cli-detector", "--format", "json", "--connection", database.ConnectionString);
        using var document = JsonDocument.Parse(list.Stdout);
        var version = document.RootElement.GetProperty("items")[0].GetProperty("version").GetString()!;
        var activate = Run("models", "activate", "--detector", "cli-detector", "--version", version, "--connection", database.ConnectionString);
        Assert.Contains($"version {version} is active", activate.Stdout);
        var table = Run("models", "list", "--connection", database.ConnectionString);
        Assert.Contains("cli-detector", table.Stdout);
        Assert.Contains("active", table.Stdout);
        Assert.Contains("WINDOW", table.Stdout);

        // A windowed model's row says how many events of which entity its windows hold, in the table and in JSON.
        Run("models", "register", "--detector", "cli-windowed", "--file", TinyModels.Windowed, "--connection", database.ConnectionString);
        var windowed = Run("models", "list", "--detector", "cli-windowed", "--connection", database.ConnectionString);
        Assert.Matches(@"cli-windowed .* 4 per machine_id", windowed.Stdout);
        using var windowedJson = JsonDocument.Parse(Run("models", "list", "--detector", "cli-windowed", "--format", "json", "--connection", database.ConnectionString).Stdout);
        var window = windowedJson.RootElement.GetProperty("items")[0].GetProperty("window");
        Assert.Equal(4, window.GetProperty("steps").GetInt32());
        Assert.Equal("machine_id", window.GetProperty("entity_field").GetString());
        Assert.Equal(JsonValueKind.Null, document.RootElement.GetProperty("items")[0].GetProperty("window").ValueKind);
        var again = Run(expectedExit: 1, "models", "register", "--detector", "cli-detector", "--file", TinyModels.First, "--connection", database.ConnectionString);
        Assert.Contains("already has model version", again.Stderr);
    }

    [Fact]
    public async Task Api_command_serves_the_api_until_stopped()
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var arg in new[] { Path.Combine(AppContext.BaseDirectory, "anomalyvae.dll"), "api", "--port", "0", "--connection", database.ConnectionString })
            start.ArgumentList.Add(arg);
        start.Environment["Api__Host"] = "127.0.0.1";
        using var process = Process.Start(start)!;
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(1));
            string? line;
            do
                line = await process.StandardOutput.ReadLineAsync(timeout.Token);
            while (line is not null && !line.StartsWith("anomalyvae api listening on ", StringComparison.Ordinal));
            if (line is null)
                Assert.Fail("anomalyvae api exited before listening: " + await process.StandardError.ReadToEndAsync(timeout.Token));
            var address = line["anomalyvae api listening on ".Length..].Split(',')[0].Trim();
            using var client = new HttpClient { BaseAddress = new Uri(address) };
            using var detectors = JsonDocument.Parse(await client.GetStringAsync("/api/detectors", timeout.Token));
            Assert.Contains(detectors.RootElement.GetProperty("items").EnumerateArray(), d => d.GetProperty("detector").GetString() == "payments");
            var page = await client.GetStringAsync("/", timeout.Token);
            Assert.Contains("<title>AnomalyVae</title>", page);
        }
        finally
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync();
        }
    }

    [Fact]
    public async Task Dashboard_filters_opens_an_anomaly_and_draws_its_contributions_in_chromium()
    {
        var root = RepoRoot();
        var script = Path.Combine(root, "tests", "dashboard", "dashboard.spec.mjs");
        Assert.True(File.Exists(Path.Combine(root, "tests", "dashboard", "node_modules", "playwright-core", "package.json")),
            "playwright-core is not installed: run deploy/local/dashboard-assets.sh (setup.sh does).");
        Assert.True(File.Exists("/usr/bin/chromium"), "Debian chromium is not installed: run deploy/local/setup.sh.");
        var registry = new ModelRegistry(database.DataSource);
        if ((await registry.ListAsync("sensors")).Count == 0)
        {
            await registry.RegisterFileAsync("sensors", TinyModels.First, activate: false);
            await registry.RegisterFileAsync("sensors", TinyModels.Second, activate: true);
            await registry.RegisterFileAsync("machines", TinyModels.Windowed, activate: true);
        }

        // A recent scoring window of "payments" whose scores all fall in the top calibration bin: drift.
        await using (var stats = database.DataSource.CreateCommand(
            """
            INSERT INTO scoring_stats (detector, window_start, window_seconds, model_version, events_scored, events_flagged, score_bins)
            VALUES ('payments', date_trunc('minute', now()), 60, 'v-seed', 1000, 10, '{0,0,0,0,0,0,0,0,0,0,1000}')
            ON CONFLICT DO NOTHING
            """))
            await stats.ExecuteNonQueryAsync();

        await using var server = await ApiServer.StartAsync(database.ConnectionString, ["k"]);
        var artifacts = Path.Combine(root, "artifacts");
        Directory.CreateDirectory(artifacts);
        var screenshot = Path.Combine(artifacts, "dashboard.png");
        File.Delete(screenshot);

        var start = new ProcessStartInfo("node") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var argument in new[] { script, server.BaseAddress, screenshot, "payments", "drift" })
            start.ArgumentList.Add(argument);
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail("the dashboard script did not finish within 2 minutes");
        }
        var output = $"stdout:\n{await stdout}\nstderr:\n{await stderr}";
        Assert.True(process.ExitCode == 0, output);
        Assert.Contains("filtered to", output);
        Assert.Contains("drift badge: drift · PSI", output);
        Assert.Contains("contributions temperature, vibration, pressure, rpm", output);
        Assert.Matches(@"incident \d+: 9 anomalies of m\d", output);
        Assert.Matches(@"alert link: \d+ incidents of m\d", output);
        Assert.Contains("model machines: 4 events per machine_id", output);
        Assert.Contains("model sensors: each event", output);
        var png = new FileInfo(screenshot);
        Assert.True(png.Exists, output);
        // A real full-page render of tables and two charts is far larger than a blank page (a few KB).
        Assert.True(png.Length > 40_000, $"screenshot is only {png.Length} bytes");
        var header = new byte[8];
        await using (var file = png.OpenRead())
            await file.ReadExactlyAsync(header);
        Assert.Equal(new byte[] { 0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A }, header);
    }

    private CliResult Run(params string[] args) => Run(expectedExit: 0, args);

    private static CliResult Run(int expectedExit, params string[] args) => CliProcess.Run(expectedExit, args);

    private static string RepoRoot() => TestInfrastructure.FindRepoRoot();

    /// <summary>A database with 90 anomalies of two detectors for the CLI and dashboard tests.</summary>
    public sealed class SeededDatabase(TestInfrastructure infrastructure) : IAsyncLifetime
    {
        public string ConnectionString { get; private set; } = "";

        public NpgsqlDataSource DataSource { get; private set; } = null!;

        public List<SeededAnomaly> Seeded { get; private set; } = [];

        public async Task InitializeAsync()
        {
            ConnectionString = await infrastructure.CreateDatabaseAsync("cli", CancellationToken.None);
            await AnomalySeed.MigrateAsync(ConnectionString);
            Seeded = await AnomalySeed.InsertAsync(ConnectionString, 90, AnomalySeed.Detectors, DateTimeOffset.UtcNow.AddMinutes(-2));
            await AnomalySeed.GroupIntoIncidentsAsync(ConnectionString);
            DataSource = NpgsqlDataSource.Create(ConnectionString);
        }

        public async Task DisposeAsync()
        {
            await DataSource.DisposeAsync();
            await infrastructure.DropDatabaseAsync(ConnectionString, CancellationToken.None);
        }
    }
}
