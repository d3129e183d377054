using AnomalyVae.IntegrationTests.Infrastructure;
using Npgsql;
using NpgsqlTypes;

namespace AnomalyVae.IntegrationTests.Postgres;

/// <summary>Parameterised insert, binary COPY and read-back against the real PostgreSQL server.</summary>
[Collection(InfrastructureCollection.Name)]
public sealed class NpgsqlRoundTripTests(FreshDatabase database) : IClassFixture<FreshDatabase>
{
    private const int CopiedRows = 5000;
    private static readonly DateTime Epoch = new(2025, 1, 1, 0, 0, 0, DateTimeKind.Utc);

    [Fact]
    public async Task Parameterised_insert_and_binary_copy_read_back_unchanged()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(1));
        var ct = cts.Token;
        await using var connection = new NpgsqlConnection(database.ConnectionString);
        await connection.OpenAsync(ct);

        await Execute(connection, """
            CREATE TABLE readings (
                id bigint PRIMARY KEY,
                sensor text NOT NULL,
                value double precision,
                flagged boolean NOT NULL,
                observed_at timestamptz NOT NULL,
                payload bytea)
            """, ct);

        // One row through a parameterised INSERT, with text that would break naive quoting.
        await using (var insert = new NpgsqlCommand(
            "INSERT INTO readings VALUES (@id, @sensor, @value, @flagged, @observed_at, @payload)", connection))
        {
            insert.Parameters.AddWithValue("id", 0L);
            insert.Parameters.AddWithValue("sensor", "o'brien; DROP TABLE readings; -- ✓");
            insert.Parameters.AddWithValue("value", NpgsqlDbType.Double, DBNull.Value);
            insert.Parameters.AddWithValue("flagged", true);
            insert.Parameters.AddWithValue("observed_at", Epoch);
            insert.Parameters.AddWithValue("payload", new byte[] { 0, 1, 255 });
            Assert.Equal(1, await insert.ExecuteNonQueryAsync(ct));
        }

        await using (var writer = await connection.BeginBinaryImportAsync(
            "COPY readings (id, sensor, value, flagged, observed_at, payload) FROM STDIN (FORMAT BINARY)", ct))
        {
            for (var i = 1; i <= CopiedRows; i++)
            {
                var row = Expected(i);
                await writer.StartRowAsync(ct);
                await writer.WriteAsync(row.Id, NpgsqlDbType.Bigint, ct);
                await writer.WriteAsync(row.Sensor, NpgsqlDbType.Text, ct);
                if (row.Value is { } value)
                {
                    await writer.WriteAsync(value, NpgsqlDbType.Double, ct);
                }
                else
                {
                    await writer.WriteNullAsync(ct);
                }

                await writer.WriteAsync(row.Flagged, NpgsqlDbType.Boolean, ct);
                await writer.WriteAsync(row.ObservedAt, NpgsqlDbType.TimestampTz, ct);
                await writer.WriteAsync(row.Payload, NpgsqlDbType.Bytea, ct);
            }

            Assert.Equal((ulong)CopiedRows, await writer.CompleteAsync(ct));
        }

        await using var select = new NpgsqlCommand(
            "SELECT id, sensor, value, flagged, observed_at, payload FROM readings ORDER BY id", connection);
        await using var reader = await select.ExecuteReaderAsync(ct);

        Assert.True(await reader.ReadAsync(ct));
        Assert.Equal(0L, reader.GetInt64(0));
        Assert.Equal("o'brien; DROP TABLE readings; -- ✓", reader.GetString(1));
        Assert.True(reader.IsDBNull(2));
        Assert.True(reader.GetBoolean(3));
        Assert.Equal(Epoch, reader.GetFieldValue<DateTime>(4));
        Assert.Equal(new byte[] { 0, 1, 255 }, reader.GetFieldValue<byte[]>(5));

        var read = 0;
        while (await reader.ReadAsync(ct))
        {
            read++;
            var expected = Expected(read);
            Assert.Equal(expected.Id, reader.GetInt64(0));
            Assert.Equal(expected.Sensor, reader.GetString(1));
            Assert.Equal(expected.Value, reader.IsDBNull(2) ? null : reader.GetDouble(2));
            Assert.Equal(expected.Flagged, reader.GetBoolean(3));
            Assert.Equal(expected.ObservedAt, reader.GetFieldValue<DateTime>(4));
            Assert.Equal(expected.Payload, reader.GetFieldValue<byte[]>(5));
        }

        Assert.Equal(CopiedRows, read);
    }

    [Fact]
    public async Task Database_is_fresh_and_owned_by_this_test_class()
    {
        await using var connection = new NpgsqlConnection(database.ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(
            "SELECT current_database(), (SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'readings')",
            connection);
        await using var reader = await command.ExecuteReaderAsync();
        Assert.True(await reader.ReadAsync());
        Assert.StartsWith("t_class_", reader.GetString(0), StringComparison.Ordinal);
        Assert.Equal(0L, reader.GetInt64(1));
    }

    // Row i of the COPY: deterministic values covering nulls, negatives, fractions and time zones.
    private static Reading Expected(int i) => new(
        Id: i,
        Sensor: $"sensor-{i % 17}",
        Value: i % 13 == 0 ? null : (i - 2500) * 0.25,
        Flagged: i % 3 == 0,
        ObservedAt: Epoch.AddSeconds(i * 7.5),
        Payload: BitConverter.GetBytes(i));

    private static async Task Execute(NpgsqlConnection connection, string sql, CancellationToken ct)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync(ct);
    }

    private sealed record Reading(long Id, string Sensor, double? Value, bool Flagged, DateTime ObservedAt, byte[] Payload);
}
