using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using AnomalyVae.IntegrationTests.Api;
using AnomalyVae.IntegrationTests.Infrastructure;
using AnomalyVae.IntegrationTests.Serve;
using AnomalyVae.Tests;
using Npgsql;

namespace AnomalyVae.IntegrationTests.Postgres;

/// <summary>
/// PostgreSQL over TLS with SSL Mode=VerifyFull against the test cluster's certificate (deploy/local/postgres.sh
/// makes it): serve, the API and the CLI connect encrypted, every one of their sessions is TLS, and a certificate
/// signed by another CA is refused (the API answers 503, the CLI exits with the reason).
/// </summary>
[Collection(InfrastructureCollection.Name)]
public sealed class PostgresTlsTests(TestInfrastructure infrastructure, ServeFixture fixture) : IClassFixture<ServeFixture>
{
    [Fact]
    public async Task The_API_and_the_CLI_connect_with_VerifyFull_and_refuse_another_CA()
    {
        var database = await infrastructure.CreateDatabaseAsync("tls_api", CancellationToken.None);
        try
        {
            await AnomalySeed.MigrateAsync(database);
            await AnomalySeed.InsertAsync(database, 10, AnomalySeed.Detectors, DateTimeOffset.UtcNow.AddMinutes(-1));
            var tls = infrastructure.WithVerifiedTls(database);
            await using (var server = await ApiServer.StartAsync(tls, [], new Dictionary<string, string?>(), logs: null))
            {
                var page = await server.GetJsonAsync("/api/anomalies?limit=100");
                Assert.Equal(10, page.GetProperty("items").GetArrayLength());
                var (encrypted, plain) = await SessionsAsync(database);
                Assert.True(encrypted > 0 && plain == 0, $"{encrypted} TLS and {plain} plain sessions");
            }

            var cli = CliProcess.Run(0, "anomalies", "list", "--since", "1d", "--format", "json", "--connection", tls);
            Assert.Contains("\"items\"", cli.Stdout, StringComparison.Ordinal);

            var otherCa = OtherCa(fixture.Directory);
            var untrusted = infrastructure.WithVerifiedTls(database, otherCa);
            await using (var server = await ApiServer.StartAsync(untrusted, [], new Dictionary<string, string?> { ["Api:Migrate"] = "false" }, logs: null))
            {
                var (status, _, body) = await server.SendAsync(HttpMethod.Get, "/api/anomalies");
                Assert.True(status == 503, $"{status} {body}");
            }
            var refused = CliProcess.Run(1, "anomalies", "list", "--connection", untrusted);
            Assert.Contains("anomalyvae: error:", refused.Stderr, StringComparison.Ordinal);
        }
        finally
        {
            await infrastructure.DropDatabaseAsync(database, CancellationToken.None);
        }
    }

    [Fact]
    public async Task Serve_commits_over_VerifyFull_TLS()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        await using var stream = await ServeStream.CreateAsync(infrastructure, "tls", partitions: 2, cts.Token);
        var (topic, deadLetters, database) = stream;
        var events = await ServeFixture.ProduceAsync(infrastructure, topic, ServeFixture.Events(1500, seed: 21), cts.Token);
        var configuration = fixture.Configuration(infrastructure, topic, deadLetters, infrastructure.WithVerifiedTls(database), $"g-{Guid.NewGuid():N}");
        await using var app = ServeFixture.Host(configuration);
        await app.StartAsync(cts.Token);
        await ServeFixture.WaitForOffsetsAsync(database, topic, events, cts.Token);
        var (encrypted, plain) = await SessionsAsync(database);
        Assert.True(encrypted > 0 && plain == 0, $"{encrypted} TLS and {plain} plain sessions");
        await app.StopAsync(cts.Token);
        await fixture.AssertStoredAsync(infrastructure, database, topic, deadLetters, events, cts.Token);
    }

    /// <summary>Other sessions on <paramref name="database"/>: how many use TLS and how many do not (this one excluded).</summary>
    private static async Task<(long Encrypted, long Plain)> SessionsAsync(string database)
    {
        var name = new NpgsqlConnectionStringBuilder(database).Database;
        await using var connection = new NpgsqlConnection(database);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(
            """
            SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl)
            FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
            WHERE a.datname = $1 AND a.pid <> pg_backend_pid()
            """, connection);
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = name });
        await using var reader = await command.ExecuteReaderAsync();
        await reader.ReadAsync();
        return (reader.GetInt64(0), reader.GetInt64(1));
    }

    /// <summary>A CA certificate that signed nothing the server has.</summary>
    private static string OtherCa(string directory)
    {
        using var key = RSA.Create(2048);
        var request = new CertificateRequest("CN=Some other CA", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        using var ca = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddDays(1));
        var path = Path.Combine(directory, $"other-ca-{Guid.NewGuid():N}.crt");
        File.WriteAllText(path, ca.ExportCertificatePem());
        return path;
    }
}
