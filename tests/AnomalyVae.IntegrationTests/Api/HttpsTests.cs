using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using AnomalyVae.IntegrationTests.Infrastructure;
using AnomalyVae.IntegrationTests.Serve;

namespace AnomalyVae.IntegrationTests.Api;

/// <summary>
/// HTTPS for the API's and serve's HTTP with the certificate from Kestrel's configuration keys: a client that trusts
/// exactly that certificate gets answers, plain HTTP on the same port gets none.
/// </summary>
[Collection(InfrastructureCollection.Name)]
public sealed class HttpsTests(TestInfrastructure infrastructure, AnomalyApiTests.SeededApi api, ServeFixture fixture)
    : IClassFixture<AnomalyApiTests.SeededApi>, IClassFixture<ServeFixture>
{
    [Fact]
    public async Task The_api_serves_HTTPS_only_with_the_configured_certificate()
    {
        var (certificate, settings) = Certificate(fixture.Directory);
        settings["Api:Migrate"] = "false";
        await using var server = await ApiServer.StartAsync(api.ConnectionString, [], settings, logs: null);
        var address = new Uri(server.BaseAddress);
        Assert.Equal("https", address.Scheme);
        using var client = Pinned(certificate, address);
        using var response = await client.GetAsync("/api/detectors");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        using var plain = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{address.Port}"), Timeout = TimeSpan.FromSeconds(10) };
        await Assert.ThrowsAsync<HttpRequestException>(() => plain.GetAsync("/api/detectors"));
    }

    [Fact]
    public async Task Serve_answers_healthz_and_metrics_over_HTTPS_only()
    {
        var (certificate, settings) = Certificate(fixture.Directory);
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        var topic = await infrastructure.CreateTopicAsync("https", partitions: 1, cts.Token);
        var database = await infrastructure.CreateDatabaseAsync("https", cts.Token);
        try
        {
            var port = ServeFixture.FreePort();
            var configuration = fixture.Configuration(infrastructure, topic, topic + "-dlq", database, $"g-{Guid.NewGuid():N}", port);
            foreach (var (key, value) in settings)
                configuration[key] = value;
            await using var app = ServeFixture.Host(configuration);
            await app.StartAsync(cts.Token);
            using var client = Pinned(certificate, new Uri($"https://127.0.0.1:{port}"));
            Assert.Equal("ok\n", await client.GetStringAsync("/healthz", cts.Token));
            Assert.Contains("anomalyvae_", await client.GetStringAsync("/metrics", cts.Token), StringComparison.Ordinal);
            using var plain = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = TimeSpan.FromSeconds(10) };
            await Assert.ThrowsAsync<HttpRequestException>(() => plain.GetAsync("/healthz", cts.Token));
            await app.StopAsync(cts.Token);
        }
        finally
        {
            await infrastructure.DropDatabaseAsync(database, CancellationToken.None);
        }
    }

    /// <summary>A self-signed certificate for 127.0.0.1 and localhost as PEM files, and the keys that configure it.</summary>
    private static (X509Certificate2 Certificate, Dictionary<string, string?> Settings) Certificate(string directory)
    {
        using var key = RSA.Create(2048);
        var request = new CertificateRequest("CN=localhost", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        var names = new SubjectAlternativeNameBuilder();
        names.AddDnsName("localhost");
        names.AddIpAddress(IPAddress.Loopback);
        request.CertificateExtensions.Add(names.Build());
        var certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddDays(1));
        var stem = Path.Combine(directory, $"tls-{Guid.NewGuid():N}");
        File.WriteAllText(stem + ".crt", certificate.ExportCertificatePem());
        File.WriteAllText(stem + ".key", key.ExportPkcs8PrivateKeyPem());
        return (X509CertificateLoader.LoadCertificate(certificate.RawData), new Dictionary<string, string?>
        {
            ["Kestrel:Certificates:Default:Path"] = stem + ".crt",
            ["Kestrel:Certificates:Default:KeyPath"] = stem + ".key",
        });
    }

    /// <summary>A client that trusts exactly <paramref name="certificate"/> (as a pinned root, not "accept anything").</summary>
    private static HttpClient Pinned(X509Certificate2 certificate, Uri address)
    {
        var handler = new HttpClientHandler
        {
            ServerCertificateCustomValidationCallback = (_, presented, chain, errors) =>
                presented is not null && presented.RawData.AsSpan().SequenceEqual(certificate.RawData)
                && (errors & ~System.Net.Security.SslPolicyErrors.RemoteCertificateChainErrors) == System.Net.Security.SslPolicyErrors.None,
        };
        return new HttpClient(handler) { BaseAddress = address, Timeout = TimeSpan.FromSeconds(30) };
    }
}
