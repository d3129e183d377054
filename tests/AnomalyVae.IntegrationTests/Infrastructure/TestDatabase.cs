using System.Globalization;
using AnomalyVae.Storage;
using Npgsql;

namespace AnomalyVae.IntegrationTests.Infrastructure;

/// <summary>
/// A database of one test's own on the shared test server, with a data source over it and the few queries the
/// tests read it with. Disposing drops it (also after a failure half-way), so a test holds it with <c>await using</c>.
/// </summary>
public sealed class TestDatabase : IAsyncDisposable
{
    private readonly TestInfrastructure _infrastructure;

    private TestDatabase(TestInfrastructure infrastructure, string connectionString)
    {
        _infrastructure = infrastructure;
        ConnectionString = connectionString;
        DataSource = NpgsqlDataSource.Create(connectionString);
    }

    public string ConnectionString { get; }

    public NpgsqlDataSource DataSource { get; }

    /// <summary>An empty database (<paramref name="prefix"/>: a-z, 0-9 and '_'); with <paramref name="migrated"/>, at the
    /// current schema (<see cref="SchemaMigrator"/>) as serve leaves it before its first batch.</summary>
    public static async Task<TestDatabase> CreateAsync(TestInfrastructure infrastructure, string prefix, bool migrated, CancellationToken cancellationToken)
    {
        var database = new TestDatabase(infrastructure, await infrastructure.CreateDatabaseAsync(prefix, cancellationToken));
        try
        {
            if (migrated)
                await new SchemaMigrator(database.DataSource).MigrateAsync(cancellationToken);
            return database;
        }
        catch
        {
            await database.DisposeAsync();
            throw;
        }
    }

    public async Task<int> ExecuteAsync(string sql, CancellationToken cancellationToken = default)
    {
        await using var command = DataSource.CreateCommand(sql);
        return await command.ExecuteNonQueryAsync(cancellationToken);
    }

    /// <summary>The first column of the first row as <typeparamref name="T"/> (numbers converted, so an integer column
    /// reads as long); a NULL or no row fails.</summary>
    public async Task<T> ScalarAsync<T>(string sql, CancellationToken cancellationToken = default)
    {
        await using var command = DataSource.CreateCommand(sql);
        return await command.ExecuteScalarAsync(cancellationToken) switch
        {
            T value => value,
            null or DBNull => throw new InvalidOperationException($"no value: {sql}"),
            var value => (T)Convert.ChangeType(value, typeof(T), CultureInfo.InvariantCulture),
        };
    }

    public async Task<List<T>> RowsAsync<T>(string sql, Func<NpgsqlDataReader, T> read, CancellationToken cancellationToken = default)
    {
        await using var command = DataSource.CreateCommand(sql);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        var rows = new List<T>();
        while (await reader.ReadAsync(cancellationToken))
            rows.Add(read(reader));
        return rows;
    }

    public async ValueTask DisposeAsync()
    {
        await DataSource.DisposeAsync();
        NpgsqlConnection.ClearAllPools();
        await _infrastructure.DropDatabaseAsync(ConnectionString, CancellationToken.None);
    }
}
