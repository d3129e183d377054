using Npgsql;

namespace AnomalyVae.Storage;

/// <summary>The one way the project opens PostgreSQL: an <see cref="NpgsqlDataSource"/> whose connections run with JIT
/// compilation off.</summary>
/// <remarks>Why: with partitioned tables (migration 0009) a query that cannot prune, such as the detector overview
/// (GET /api/detectors), adds up every partition's cost estimate and crosses <c>jit_above_cost</c>; PostgreSQL then
/// JIT-compiles per partition, which took 4.2 s instead of 10 ms on an empty database with 17 partitions here. Every
/// query of this project reads few rows, where JIT cannot pay off. It is a startup option (<c>-c jit=off</c>): a
/// <c>SET</c> on a new connection is undone by the <c>DISCARD ALL</c> Npgsql sends when a pooled connection is reused
/// (measured: the API's fuzz test ran at 18 instead of 640 requests/s). Behind PgBouncer, add <c>options</c> to its
/// <c>ignore_startup_parameters</c> and set <c>jit = off</c> for the database instead.</remarks>
public static class PostgresDataSource
{
    public static NpgsqlDataSource Create(string connectionString)
    {
        var builder = new NpgsqlDataSourceBuilder(connectionString);
        string? options = builder.ConnectionStringBuilder.Options;
        if (options is null || !options.Contains("jit", StringComparison.Ordinal))
            builder.ConnectionStringBuilder.Options = string.IsNullOrWhiteSpace(options) ? "-c jit=off" : options + " -c jit=off";
        return builder.Build();
    }
}
