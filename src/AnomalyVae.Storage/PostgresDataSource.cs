using Npgsql;

namespace AnomalyVae.Storage;

/// <summary>The one way the project opens PostgreSQL: an <see cref="NpgsqlDataSource"/> whose connections run with JIT
/// compilation off.</summary>
/// <remarks>Why: with partitioned tables (migration 0009) a query that cannot prune, such as the detector overview
/// (GET /api/detectors), adds up every partition's cost estimate and crosses <c>jit_above_cost</c>; PostgreSQL then
/// JIT-compiles per partition, which took 4.2 s instead of 10 ms on an empty database with 17 partitions here. Every
/// query of this project reads few rows, where JIT cannot pay off. Set per physical connection with SET (not as a
/// startup option, which connection poolers such as PgBouncer refuse).</remarks>
public static class PostgresDataSource
{
    public static NpgsqlDataSource Create(string connectionString)
    {
        var builder = new NpgsqlDataSourceBuilder(connectionString);
        builder.UsePhysicalConnectionInitializer(
            connection =>
            {
                using var command = new NpgsqlCommand("SET jit = off", connection);
                command.ExecuteNonQuery();
            },
            async connection =>
            {
                await using var command = new NpgsqlCommand("SET jit = off", connection);
                await command.ExecuteNonQueryAsync();
            });
        return builder.Build();
    }
}
