using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Npgsql;

namespace AnomalyVae.IntegrationTests.Serve;

/// <summary>
/// A real <c>anomalyvae serve --config FILE</c> process (the CLI built next to this test assembly's configuration),
/// for the tests that kill it, signal it or run several in one consumer group. Its output is kept for assertions.
/// </summary>
internal sealed class ServeProcess : IDisposable
{
    private readonly Process _process;
    private readonly ConcurrentQueue<string> _output = new();

    private ServeProcess(Process process, int httpPort)
    {
        _process = process;
        HttpPort = httpPort;
    }

    /// <summary>The port of its /readyz (0 when it serves no HTTP).</summary>
    public int HttpPort { get; }

    public int Id => _process.Id;

    public bool HasExited => _process.HasExited;

    public int ExitCode => _process.ExitCode;

    /// <summary>Every line it wrote to stdout and stderr so far.</summary>
    public string Output => string.Join('\n', _output);

    /// <summary>Starts <c>serve</c>; <paramref name="logLevel"/> is the default log level (Information shows the
    /// workers' assignment and shutdown lines); <paramref name="overrides"/> are <c>--Section:Key=value</c> arguments.</summary>
    public static ServeProcess Start(string configFile, string logLevel = "Warning", int httpPort = 0, params string[] overrides) =>
        StartCli(["serve", "--config", configFile, $"--Http:Port={httpPort.ToString(CultureInfo.InvariantCulture)}", .. overrides], null, logLevel, httpPort);

    /// <summary>Starts any long-running <c>anomalyvae</c> command (serve, api) with extra environment variables.</summary>
    public static ServeProcess StartCli(IEnumerable<string> args, IReadOnlyDictionary<string, string>? environment, string logLevel, int httpPort)
    {
        // Through env(1) with SIGINT and SIGTERM at their defaults: a test run started in the background (`./test.sh &`)
        // inherits SIGINT as ignored, which the child would keep, and the SIGINT test would wait for nothing.
        var start = new ProcessStartInfo("env") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add("--default-signal=INT,TERM");
        start.ArgumentList.Add("dotnet");
        start.ArgumentList.Add(CliPath());
        foreach (var arg in args)
            start.ArgumentList.Add(arg);
        start.Environment["Logging__LogLevel__Default"] = logLevel;
        // One line per message, so the assertions can look for whole lines.
        start.Environment["Logging__Console__FormatterName"] = "simple";
        start.Environment["Logging__Console__FormatterOptions__SingleLine"] = "true";
        foreach (var (name, value) in environment ?? new Dictionary<string, string>())
            start.Environment[name] = value;
        var process = Process.Start(start) ?? throw new InvalidOperationException("could not start anomalyvae");
        var serve = new ServeProcess(process, httpPort);
        // Drain the pipes so the child never blocks on a full one.
        process.OutputDataReceived += (_, e) => serve.Keep(e.Data);
        process.ErrorDataReceived += (_, e) => serve.Keep(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return serve;
    }

    private void Keep(string? line)
    {
        if (line is not null)
            _output.Enqueue(line);
    }

    /// <summary>SIGKILL: no chance to finish anything.</summary>
    public void Kill() => _process.Kill();

    /// <summary>Sends a POSIX signal by name (TERM, INT) through kill(1).</summary>
    public async Task SignalAsync(string signal, CancellationToken cancellationToken)
    {
        using var kill = Process.Start(new ProcessStartInfo("kill") { ArgumentList = { "-s", signal, Id.ToString(CultureInfo.InvariantCulture) } })
            ?? throw new InvalidOperationException("could not run kill");
        await kill.WaitForExitAsync(cancellationToken);
        Assert.Equal(0, kill.ExitCode);
    }

    /// <summary>Waits for the process to end, and for its output to be read to the end.</summary>
    public Task WaitForExitAsync(CancellationToken cancellationToken) => _process.WaitForExitAsync(cancellationToken);

    /// <summary>The partitions the (only) detector owns, as /readyz reports them; null while it does not answer.</summary>
    public async Task<int[]?> PartitionsAsync(HttpClient http, CancellationToken cancellationToken)
    {
        try
        {
            using var response = await http.GetAsync(new Uri($"http://127.0.0.1:{HttpPort}/readyz"), cancellationToken);
            using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync(cancellationToken));
            return [.. json.RootElement.GetProperty("detectors")[0].GetProperty("partitions").EnumerateArray().Select(p => p.GetInt32())];
        }
        catch (HttpRequestException)
        {
            return null;
        }
    }

    public void Dispose()
    {
        if (!_process.HasExited)
        {
            _process.Kill();
            _process.WaitForExit();
        }
        _process.Dispose();
    }

    /// <summary>Writes a configuration (the fixture's "A:B:C" keys) as the JSON file <c>--config</c> reads.</summary>
    public static async Task<string> WriteConfigAsync(string directory, Dictionary<string, string?> configuration, CancellationToken cancellationToken)
    {
        var path = Path.Combine(directory, $"serve-{Guid.NewGuid():N}.json");
        await File.WriteAllTextAsync(path, JsonSerializer.Serialize(Nest(configuration)), cancellationToken);
        return path;
    }

    /// <summary>
    /// The crash tests' run: <c>serve</c> SIGKILLed <paramref name="kills"/> times mid-stream, each time once it has
    /// committed more than before, then after a random 0–300 ms (<paramref name="seed"/>); restarted after each kill, and
    /// at last run until the stored offsets reach the end of <paramref name="events"/>. Fails when the stream ends
    /// before the last kill (produce more events then).
    /// </summary>
    public static async Task KillMidStreamAsync(string configFile, string database, string topic, IReadOnlyList<ProducedEvent> events,
        int kills, int seed, string label, CancellationToken cancellationToken)
    {
        var random = new Random(seed);
        long previous = 0;
        for (int kill = 0; kill < kills; kill++)
        {
            using var serve = Start(configFile);
            while (await CommittedAsync(database, cancellationToken) <= previous)
            {
                Assert.False(serve.HasExited, "serve exited before committing anything:\n" + serve.Output);
                await Task.Delay(20, cancellationToken);
            }
            await Task.Delay(random.Next(0, 300), cancellationToken);
            serve.Kill();
            await serve.WaitForExitAsync(cancellationToken);
            previous = await CommittedAsync(database, cancellationToken);
            Console.WriteLine($"{label} {kill + 1}: {previous} of {events.Count} events committed");
            Assert.True(previous < events.Count, "the stream finished before all kills happened; produce more events");
        }
        using (var serve = Start(configFile))
        {
            await ServeFixture.WaitForOffsetsAsync(database, topic, events, cancellationToken);
            serve.Kill();
            await serve.WaitForExitAsync(cancellationToken);
        }
    }

    private static async Task<long> CommittedAsync(string database, CancellationToken cancellationToken) =>
        (await StoredOffsetsAsync(database, cancellationToken)).Values.Sum();

    /// <summary>The next offset stored in PostgreSQL per partition (empty before the migrations ran).</summary>
    public static async Task<Dictionary<int, long>> StoredOffsetsAsync(string database, CancellationToken cancellationToken)
    {
        await using var connection = new NpgsqlConnection(database);
        await connection.OpenAsync(cancellationToken);
        await using var command = new NpgsqlCommand("SELECT \"partition\", next_offset FROM consumer_offsets", connection);
        var stored = new Dictionary<int, long>();
        try
        {
            await using var reader = await command.ExecuteReaderAsync(cancellationToken);
            while (await reader.ReadAsync(cancellationToken))
                stored[reader.GetInt32(0)] = reader.GetInt64(1);
        }
        catch (PostgresException e) when (e.SqlState == "42P01")
        {
            // Not migrated yet.
        }
        return stored;
    }

    private static string CliPath()
    {
        var testBin = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar));
        // .../tests/AnomalyVae.IntegrationTests/bin/<Configuration>/<tfm>/
        string tfm = testBin.Name, configuration = testBin.Parent!.Name;
        var root = testBin.Parent!.Parent!.Parent!.Parent!.Parent!.FullName;
        var path = Path.Combine(root, "src", "AnomalyVae.Cli", "bin", configuration, tfm, "anomalyvae.dll");
        return File.Exists(path) ? path : throw new FileNotFoundException($"The CLI is not built: {path}", path);
    }

    /// <summary>"A:B:C" keys → nested JSON objects ("Detectors:0" stays an object with key "0": the binder reads it as a list).</summary>
    private static Dictionary<string, object> Nest(Dictionary<string, string?> flat)
    {
        var root = new Dictionary<string, object>();
        foreach (var (key, value) in flat)
        {
            var parts = key.Split(':');
            var node = root;
            for (int i = 0; i < parts.Length - 1; i++)
            {
                if (!node.TryGetValue(parts[i], out var child))
                    node[parts[i]] = child = new Dictionary<string, object>();
                node = (Dictionary<string, object>)child;
            }
            node[parts[^1]] = value!;
        }
        return root;
    }
}
