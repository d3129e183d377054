using AnomalyVae.IntegrationTests.Infrastructure;

namespace AnomalyVae.IntegrationTests.Serve;

/// <summary>
/// What one serve test streams through, all its own: a topic, a dead-letter topic and a database that serve migrates
/// itself. Disposing drops the database (topics have unique names and are left to the test cluster).
/// </summary>
internal sealed class ServeStream(string topic, string deadLetterTopic, TestDatabase database) : IAsyncDisposable
{
    public string Topic => topic;

    public string DeadLetterTopic => deadLetterTopic;

    public TestDatabase Database => database;

    /// <summary>Topic "<paramref name="name"/>-…" of <paramref name="partitions"/> partitions, dead letters in
    /// "<paramref name="name"/>-dlq-…" (one partition), and an empty database named after it.</summary>
    public static async Task<ServeStream> CreateAsync(TestInfrastructure infrastructure, string name, int partitions, CancellationToken cancellationToken)
    {
        var topic = await infrastructure.CreateTopicAsync(name, partitions, cancellationToken);
        var deadLetters = await infrastructure.CreateTopicAsync($"{name}-dlq", partitions: 1, cancellationToken);
        var database = await TestDatabase.CreateAsync(infrastructure, name.Replace('-', '_'), migrated: false, cancellationToken);
        return new ServeStream(topic, deadLetters, database);
    }

    /// <summary>The topic, the dead-letter topic and the database's connection string, as the tests name them.</summary>
    public void Deconstruct(out string topic, out string deadLetterTopic, out string database) =>
        (topic, deadLetterTopic, database) = (Topic, DeadLetterTopic, Database.ConnectionString);

    public ValueTask DisposeAsync() => Database.DisposeAsync();
}
