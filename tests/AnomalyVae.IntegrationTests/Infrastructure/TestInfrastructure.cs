using System.Diagnostics;
using System.Globalization;
using System.Text;
using AnomalyVae.Streaming;
using Confluent.Kafka;
using Npgsql;

namespace AnomalyVae.IntegrationTests.Infrastructure;

/// <summary>
/// The real Kafka broker and PostgreSQL server the integration tests run against, brought up once
/// per test run (every integration test class joins <see cref="InfrastructureCollection"/>).
/// When ANOMALYVAE_TEST_KAFKA (host:port; plus ANOMALYVAE_TEST_ZK host:port for topic creation)
/// and ANOMALYVAE_TEST_PG (an Npgsql connection string) are set, as test.sh does, those are used
/// as they are. Otherwise deploy/local/kafka.sh and postgres.sh start them on test ports with data
/// under &lt;repo&gt;/.data/test, and whatever this fixture started it stops again at the end.
/// </summary>
public sealed class TestInfrastructure : IAsyncLifetime
{
    // Defaults shared with test.sh; ANOMALYVAE_TEST_*_PORT override them.
    private static readonly int KafkaPort = PortFromEnvironment("ANOMALYVAE_TEST_KAFKA_PORT", 19092);
    private static readonly int ZooKeeperPort = PortFromEnvironment("ANOMALYVAE_TEST_ZK_PORT", 12181);
    private static readonly int PostgresPort = PortFromEnvironment("ANOMALYVAE_TEST_PG_PORT", 15433);
    private static readonly TimeSpan StartTimeout = TimeSpan.FromMinutes(3);
    private static readonly TimeSpan CommandTimeout = TimeSpan.FromMinutes(1);

    private readonly string _repoRoot = FindRepoRoot();
    private bool _startedKafka;
    private bool _startedPostgres;

    /// <summary>host:port of the broker.</summary>
    public string KafkaBootstrap { get; private set; } = "";

    /// <summary>host:port of the broker's ZooKeeper (0.9 creates topics through it).</summary>
    public string? ZooKeeperConnect { get; private set; }

    /// <summary>Connection string of a database the test role may create databases from.</summary>
    public string PostgresConnectionString { get; private set; } = "";

    public async Task InitializeAsync()
    {
        using var cts = new CancellationTokenSource(StartTimeout);
        var kafka = Environment.GetEnvironmentVariable("ANOMALYVAE_TEST_KAFKA");
        if (!string.IsNullOrWhiteSpace(kafka))
        {
            KafkaBootstrap = kafka.Trim();
            ZooKeeperConnect = Environment.GetEnvironmentVariable("ANOMALYVAE_TEST_ZK") is { Length: > 0 } zk ? zk.Trim() : null;
        }
        else
        {
            _startedKafka = await EnsureRunningAsync("kafka.sh", cts.Token);
            KafkaBootstrap = $"127.0.0.1:{KafkaPort}";
            ZooKeeperConnect = $"127.0.0.1:{ZooKeeperPort}";
        }

        var postgres = Environment.GetEnvironmentVariable("ANOMALYVAE_TEST_PG");
        if (!string.IsNullOrWhiteSpace(postgres))
        {
            PostgresConnectionString = postgres.Trim();
        }
        else
        {
            _startedPostgres = await EnsureRunningAsync("postgres.sh", cts.Token);
            PostgresConnectionString = $"Host=127.0.0.1;Port={PostgresPort};Username=anomalyvae;Database=anomalyvae_test";
        }
    }

    public async Task DisposeAsync()
    {
        NpgsqlConnection.ClearAllPools();
        using var cts = new CancellationTokenSource(CommandTimeout);
        if (_startedKafka)
        {
            await RunScriptAsync("kafka.sh", ["stop"], cts.Token);
        }

        if (_startedPostgres)
        {
            await RunScriptAsync("postgres.sh", ["stop"], cts.Token);
        }
    }

    /// <summary>
    /// Client options for the test broker. The two version properties are what librdkafka needs to
    /// talk to Kafka 0.9; the session timeout is inside 0.9's default accepted range (6-30 s).
    /// </summary>
    public KafkaOptions KafkaOptions(string groupId = "anomalyvae-tests")
    {
        var options = new KafkaOptions { BootstrapServers = KafkaBootstrap, GroupId = groupId };
        options.Properties["api.version.request"] = "false";
        options.Properties["broker.version.fallback"] = "0.9.0.1";
        options.Properties["session.timeout.ms"] = "10000";
        return options;
    }

    /// <summary>A consumer that starts at the earliest offset and commits only when told to.</summary>
    public ConsumerConfig ConsumerConfig(string groupId)
    {
        var config = KafkaOptions(groupId).ToConsumerConfig();
        config.AutoOffsetReset = AutoOffsetReset.Earliest;
        config.EnableAutoCommit = false;
        return config;
    }

    public ProducerConfig ProducerConfig() => KafkaOptions().ToProducerConfig();

    /// <summary>Creates a topic with a unique name and waits until every partition has a leader.</summary>
    public async Task<string> CreateTopicAsync(string prefix, int partitions, CancellationToken cancellationToken)
    {
        if (ZooKeeperConnect is null)
        {
            throw new InvalidOperationException(
                "ANOMALYVAE_TEST_KAFKA is set but ANOMALYVAE_TEST_ZK is not: Kafka 0.9 topics are created through ZooKeeper (host:port).");
        }

        var topic = $"{prefix}-{Guid.NewGuid():N}";
        await RunScriptAsync(
            "kafka.sh",
            ["create-topic", topic, partitions.ToString(CultureInfo.InvariantCulture)],
            cancellationToken,
            ("KAFKA_BOOTSTRAP", KafkaBootstrap),
            ("ZK_CONNECT", ZooKeeperConnect));
        return topic;
    }

    /// <summary>
    /// The CA certificate that signed the test cluster's TLS certificate: deploy/local/postgres.sh writes it to
    /// $ANOMALYVAE_DATA/postgres-ca.crt (data dir &lt;repo&gt;/.data/test unless set).
    /// </summary>
    public string PostgresCaFile
    {
        get
        {
            var data = Environment.GetEnvironmentVariable("ANOMALYVAE_DATA") is { Length: > 0 } d ? d : Path.Combine(_repoRoot, ".data", "test");
            var path = Path.Combine(data, "postgres-ca.crt");
            if (!File.Exists(path))
            {
                throw new InvalidOperationException(
                    $"{path} does not exist: the PostgreSQL TLS tests need the cluster deploy/local/postgres.sh starts (it writes the CA there); set ANOMALYVAE_DATA to its data directory.");
            }

            return path;
        }
    }

    /// <summary>
    /// host:port of the test broker's TLS listener and the CA that signed its certificate, as deploy/local/kafka.sh
    /// writes them to $ANOMALYVAE_DATA/kafka-ssl and kafka-ca.crt.
    /// </summary>
    public (string Bootstrap, string CaFile) KafkaTls
    {
        get
        {
            var data = Environment.GetEnvironmentVariable("ANOMALYVAE_DATA") is { Length: > 0 } d ? d : Path.Combine(_repoRoot, ".data", "test");
            var bootstrap = Path.Combine(data, "kafka-ssl");
            var ca = Path.Combine(data, "kafka-ca.crt");
            if (!File.Exists(bootstrap) || !File.Exists(ca))
            {
                throw new InvalidOperationException(
                    $"{bootstrap} or {ca} does not exist: the Kafka TLS tests need the broker deploy/local/kafka.sh starts; set ANOMALYVAE_DATA to its data directory.");
            }

            return (File.ReadAllText(bootstrap).Trim(), ca);
        }
    }

    /// <summary><paramref name="connectionString"/> over TLS, verifying the server's certificate and host name.</summary>
    public string WithVerifiedTls(string connectionString, string? rootCertificate = null) =>
        new NpgsqlConnectionStringBuilder(connectionString) { SslMode = SslMode.VerifyFull, RootCertificate = rootCertificate ?? PostgresCaFile }.ConnectionString;

    /// <summary>Creates an empty database with a unique name; returns its connection string.</summary>
    public async Task<string> CreateDatabaseAsync(string prefix, CancellationToken cancellationToken)
    {
        var name = $"t_{prefix}_{Guid.NewGuid():N}".ToLowerInvariant();
        if (name.Length > 63 || name.Any(c => !(char.IsAsciiLetterLower(c) || char.IsAsciiDigit(c) || c == '_')))
        {
            throw new ArgumentException($"Database prefix '{prefix}' must be short and use only a-z, 0-9 and '_'.", nameof(prefix));
        }

        await using (var connection = new NpgsqlConnection(PostgresConnectionString))
        {
            await connection.OpenAsync(cancellationToken);
            await using var command = new NpgsqlCommand($"CREATE DATABASE {name}", connection);
            await command.ExecuteNonQueryAsync(cancellationToken);
        }

        return new NpgsqlConnectionStringBuilder(PostgresConnectionString) { Database = name }.ConnectionString;
    }

    public async Task DropDatabaseAsync(string connectionString, CancellationToken cancellationToken)
    {
        var name = new NpgsqlConnectionStringBuilder(connectionString).Database
            ?? throw new ArgumentException("Connection string names no database.", nameof(connectionString));
        await using (var pooled = new NpgsqlConnection(connectionString))
        {
            NpgsqlConnection.ClearPool(pooled);
        }

        await using var connection = new NpgsqlConnection(PostgresConnectionString);
        await connection.OpenAsync(cancellationToken);
        // FORCE: a test that failed half-way may still hold a connection.
        await using var command = new NpgsqlCommand($"DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)", connection);
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    /// <summary>Stops the broker and its ZooKeeper (outage tests). Only the servers deploy/local/kafka.sh runs for
    /// this repository's .data/test can be stopped; a broker named by ANOMALYVAE_TEST_KAFKA elsewhere cannot.</summary>
    public Task StopKafkaAsync(CancellationToken cancellationToken) => RunScriptedAsync("kafka.sh", KafkaBootstrap, KafkaPort, "stop", cancellationToken);

    /// <summary>Starts the broker again and waits until it is ready (idempotent).</summary>
    public Task StartKafkaAsync(CancellationToken cancellationToken) => RunScriptedAsync("kafka.sh", KafkaBootstrap, KafkaPort, "start", cancellationToken);

    /// <summary>Stops the PostgreSQL server (outage tests; same restriction as <see cref="StopKafkaAsync"/>).</summary>
    public Task StopPostgresAsync(CancellationToken cancellationToken)
    {
        NpgsqlConnection.ClearAllPools();
        return RunScriptedAsync("postgres.sh", PostgresHostPort, PostgresPort, "stop", cancellationToken);
    }

    /// <summary>Starts PostgreSQL again and waits until it accepts connections (idempotent).</summary>
    public Task StartPostgresAsync(CancellationToken cancellationToken) => RunScriptedAsync("postgres.sh", PostgresHostPort, PostgresPort, "start", cancellationToken);

    private string PostgresHostPort
    {
        get
        {
            var builder = new NpgsqlConnectionStringBuilder(PostgresConnectionString);
            return $"{builder.Host}:{builder.Port}";
        }
    }

    private async Task RunScriptedAsync(string script, string inUse, int scriptPort, string command, CancellationToken cancellationToken)
    {
        if (inUse != $"127.0.0.1:{scriptPort}" && inUse != $"localhost:{scriptPort}")
        {
            throw new InvalidOperationException(
                $"The tests use {inUse}, not the server deploy/local/{script} runs on port {scriptPort}: outage tests need servers they can stop and start.");
        }

        await RunScriptAsync(script, [command], cancellationToken);
    }

    /// <summary>Starts a service with its script unless it already runs; true when this call started it.</summary>
    private async Task<bool> EnsureRunningAsync(string script, CancellationToken cancellationToken)
    {
        var (status, _) = await RunScriptAsync(script, ["status"], cancellationToken, checkExitCode: false);
        if (status == 0)
        {
            return false;
        }

        await RunScriptAsync(script, ["start"], cancellationToken);
        return true;
    }

    private Task<(int ExitCode, string Output)> RunScriptAsync(
        string script, string[] arguments, CancellationToken cancellationToken, params (string Name, string Value)[] environment) =>
        RunScriptAsync(script, arguments, cancellationToken, checkExitCode: true, environment);

    private async Task<(int ExitCode, string Output)> RunScriptAsync(
        string script,
        string[] arguments,
        CancellationToken cancellationToken,
        bool checkExitCode,
        params (string Name, string Value)[] environment)
    {
        var path = Path.Combine(_repoRoot, "deploy", "local", script);
        var start = new ProcessStartInfo("bash")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = _repoRoot,
        };
        start.ArgumentList.Add(path);
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        start.Environment["ANOMALYVAE_DATA"] = Path.Combine(_repoRoot, ".data", "test");
        start.Environment["KAFKA_PORT"] = KafkaPort.ToString(CultureInfo.InvariantCulture);
        start.Environment["ZK_PORT"] = ZooKeeperPort.ToString(CultureInfo.InvariantCulture);
        start.Environment["PG_PORT"] = PostgresPort.ToString(CultureInfo.InvariantCulture);
        foreach (var (name, value) in environment)
        {
            start.Environment[name] = value;
        }

        using var process = Process.Start(start) ?? throw new InvalidOperationException($"could not start bash {path}");
        var output = new StringBuilder();
        var stdout = process.StandardOutput.ReadToEndAsync(cancellationToken);
        var stderr = process.StandardError.ReadToEndAsync(cancellationToken);
        try
        {
            await process.WaitForExitAsync(cancellationToken);
            output.Append(await stdout).Append(await stderr);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{script} {string.Join(' ', arguments)} did not finish in time.");
        }

        if (checkExitCode && process.ExitCode != 0)
        {
            throw new InvalidOperationException(
                $"{script} {string.Join(' ', arguments)} failed with exit code {process.ExitCode}:\n{output}");
        }

        return (process.ExitCode, output.ToString());
    }

    /// <summary>The repository the tests run from (the directory holding AnomalyVae.sln).</summary>
    internal static string FindRepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "AnomalyVae.sln")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException($"AnomalyVae.sln not found above {AppContext.BaseDirectory}.");
    }

    private static int PortFromEnvironment(string name, int fallback) =>
        Environment.GetEnvironmentVariable(name) is { Length: > 0 } value
            ? int.Parse(value, NumberStyles.None, CultureInfo.InvariantCulture)
            : fallback;
}

/// <summary>All integration test classes join this collection, so the infrastructure starts once.</summary>
[CollectionDefinition(Name)]
public sealed class InfrastructureCollection : ICollectionFixture<TestInfrastructure>
{
    public const string Name = "Infrastructure";
}

/// <summary>A fresh, empty database for one test class (use as IClassFixture), dropped afterwards.</summary>
public sealed class FreshDatabase(TestInfrastructure infrastructure) : IAsyncLifetime
{
    public string ConnectionString { get; private set; } = "";

    public async Task InitializeAsync()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(1));
        ConnectionString = await infrastructure.CreateDatabaseAsync("class", cts.Token);
    }

    public async Task DisposeAsync()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(1));
        await infrastructure.DropDatabaseAsync(ConnectionString, cts.Token);
    }
}
