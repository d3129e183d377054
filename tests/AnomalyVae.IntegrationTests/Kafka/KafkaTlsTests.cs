using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using AnomalyVae.IntegrationTests.Infrastructure;
using AnomalyVae.IntegrationTests.Serve;
using Confluent.Kafka;

namespace AnomalyVae.IntegrationTests.Kafka;

/// <summary>
/// Kafka over TLS against the test broker's SSL listener (deploy/local/kafka.sh): serve consumes and dead-letters
/// through librdkafka with security.protocol=ssl and the broker's CA, and a client that trusts another CA gets nothing
/// through.
/// </summary>
[Collection(InfrastructureCollection.Name)]
public sealed class KafkaTlsTests(TestInfrastructure infrastructure, ServeFixture fixture) : IClassFixture<ServeFixture>
{
    [Fact]
    public async Task Serve_consumes_and_dead_letters_over_TLS()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        var (bootstrap, ca) = infrastructure.KafkaTls;
        await using var stream = await ServeStream.CreateAsync(infrastructure, "kafka-tls", partitions: 2, cts.Token);
        var (topic, deadLetters, database) = stream;
        var events = await ServeFixture.ProduceAsync(infrastructure, topic, ServeFixture.Events(1500, seed: 31), cts.Token);
        var configuration = fixture.Configuration(infrastructure, topic, deadLetters, database, $"g-{Guid.NewGuid():N}");
        configuration["Kafka:BootstrapServers"] = bootstrap;
        configuration["Kafka:Properties:security.protocol"] = "ssl";
        configuration["Kafka:Properties:ssl.ca.location"] = ca;
        await using var app = ServeFixture.Host(configuration);
        await app.StartAsync(cts.Token);
        await ServeFixture.WaitForOffsetsAsync(database, topic, events, cts.Token);
        await app.StopAsync(cts.Token);
        // Every row, offset and dead letter as expected: the dead letters went out over TLS too.
        await fixture.AssertStoredAsync(infrastructure, database, topic, deadLetters, events, cts.Token);
    }

    [Fact]
    public async Task A_client_that_trusts_another_CA_gets_nothing_through()
    {
        var (bootstrap, _) = infrastructure.KafkaTls;
        var topic = await infrastructure.CreateTopicAsync("kafka-tls-refused", partitions: 1, CancellationToken.None);
        var config = infrastructure.ProducerConfig();
        config.BootstrapServers = bootstrap;
        config.SecurityProtocol = SecurityProtocol.Ssl;
        config.SslCaLocation = OtherCa(fixture.Directory);
        config.MessageTimeoutMs = 5000;
        using var producer = new ProducerBuilder<Null, string>(config).SetLogHandler((_, _) => { }).Build();
        var error = await Assert.ThrowsAsync<ProduceException<Null, string>>(() => producer.ProduceAsync(topic, new Message<Null, string> { Value = "x" }));
        Assert.Equal(ErrorCode.Local_MsgTimedOut, error.Error.Code);
    }

    private static string OtherCa(string directory)
    {
        using var key = RSA.Create(2048);
        var request = new CertificateRequest("CN=Some other CA", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        using var ca = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddDays(1));
        var path = Path.Combine(directory, $"other-kafka-ca-{Guid.NewGuid():N}.crt");
        File.WriteAllText(path, ca.ExportCertificatePem());
        return path;
    }
}
