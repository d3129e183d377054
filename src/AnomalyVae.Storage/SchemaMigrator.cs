using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;

namespace AnomalyVae.Storage;

/// <summary>
/// Brings a PostgreSQL database up to the schema this binary expects by applying the embedded SQL migrations
/// (schemas/migrations/NNNN_name.sql) in version order, each in its own transaction: a migration must therefore be
/// transactional (no CREATE INDEX CONCURRENTLY). Safe for several processes at once; refuses an applied migration
/// whose file was edited since. Details: docs/deployment.md#database-migrations.
/// </summary>
public sealed class SchemaMigrator
{
    /// <summary>Key of the advisory lock that serializes migrators ("AnomVae1" in ASCII).</summary>
    public const long AdvisoryLockKey = 0x416E_6F6D_5661_6531;

    /// <summary>Prefix of the migrations' manifest resource names in this assembly.</summary>
    public const string ResourcePrefix = "AnomalyVae.Storage.Migrations.";

    private const string CreateBookkeeping = """
        CREATE TABLE IF NOT EXISTS schema_migrations (
          version integer PRIMARY KEY,
          file_name text NOT NULL,
          checksum text NOT NULL,
          applied_at timestamptz NOT NULL DEFAULT now()
        )
        """;

    private readonly NpgsqlDataSource _dataSource;
    private readonly ILogger _logger;
    private readonly Migration[] _migrations;

    /// <summary>A migrator for the migrations embedded in this assembly.</summary>
    public SchemaMigrator(NpgsqlDataSource dataSource, ILogger<SchemaMigrator>? logger = null)
        : this(dataSource, EmbeddedMigrations(), logger)
    {
    }

    /// <summary>A migrator for the given migrations (tests; tools that ship their own).</summary>
    /// <exception cref="SchemaMigrationException">A version that is repeated. Gaps are allowed (branches reserve numbers:
    /// 0009 may arrive before 0008); a migration lost in a merge is still caught when a database has a later one applied
    /// (<see cref="MigrateAsync"/> refuses to apply out of order).</exception>
    public SchemaMigrator(NpgsqlDataSource dataSource, IEnumerable<Migration> migrations, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(dataSource);
        ArgumentNullException.ThrowIfNull(migrations);
        _dataSource = dataSource;
        _logger = logger ?? NullLogger.Instance;
        _migrations = [.. migrations.OrderBy(m => m.Version)];
        for (var i = 1; i < _migrations.Length; i++)
        {
            if (_migrations[i].Version == _migrations[i - 1].Version)
            {
                throw new SchemaMigrationException(
                    $"migrations must have distinct version numbers, but found {string.Join(", ", _migrations.Select(m => m.FileName))}");
            }
        }
    }

    /// <summary>The migrations this migrator applies, in order.</summary>
    public IReadOnlyList<Migration> Migrations => _migrations;

    /// <summary>Reads the migrations embedded in the service assembly.</summary>
    public static IReadOnlyList<Migration> EmbeddedMigrations()
    {
        var assembly = typeof(SchemaMigrator).Assembly;
        var migrations = new List<Migration>();
        foreach (var name in assembly.GetManifestResourceNames().Where(n => n.StartsWith(ResourcePrefix, StringComparison.Ordinal)))
        {
            using var stream = assembly.GetManifestResourceStream(name)!;
            using var reader = new StreamReader(stream);
            migrations.Add(new Migration(name[ResourcePrefix.Length..], reader.ReadToEnd()));
        }

        return [.. migrations.OrderBy(m => m.Version)];
    }

    /// <summary>Applies every migration not yet applied, in order.</summary>
    /// <returns>The migrations this call applied (empty when the database was up to date or another process
    /// applied them meanwhile).</returns>
    /// <exception cref="SchemaMigrationException">An applied migration's checksum changed, a migration failed
    /// (rolled back; earlier ones stay applied), or migrations would be applied out of order.</exception>
    public async Task<IReadOnlyList<Migration>> MigrateAsync(CancellationToken cancellationToken = default)
    {
        var applied = new List<Migration>();
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        var warnedUnknown = false;
        while (true)
        {
            await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
            // Waiting for another migrator is expected; the caller's token bounds it, not a command timeout.
            await using (var lockCommand = new NpgsqlCommand("SELECT pg_advisory_xact_lock($1)", connection, transaction) { CommandTimeout = 0 })
            {
                lockCommand.Parameters.Add(new NpgsqlParameter<long> { TypedValue = AdvisoryLockKey });
                await lockCommand.ExecuteNonQueryAsync(cancellationToken);
            }

            await ExecuteAsync(connection, transaction, CreateBookkeeping, cancellationToken);
            var recorded = await ReadRecordedAsync(connection, transaction, cancellationToken);

            var next = Check(recorded, ref warnedUnknown);
            if (next is null)
            {
                await transaction.CommitAsync(cancellationToken);
                return applied;
            }

            try
            {
                await ExecuteAsync(connection, transaction, next.Sql, cancellationToken);
            }
            catch (PostgresException e)
            {
                throw new SchemaMigrationException(
                    $"migration {next.FileName} failed and was rolled back: {e.MessageText} (SQLSTATE {e.SqlState}{(e.Position > 0 ? $", at character {e.Position}" : "")})", e);
            }

            await using (var record = new NpgsqlCommand(
                "INSERT INTO schema_migrations (version, file_name, checksum) VALUES ($1, $2, $3)", connection, transaction))
            {
                record.Parameters.Add(new NpgsqlParameter<int> { TypedValue = next.Version });
                record.Parameters.Add(new NpgsqlParameter<string> { TypedValue = next.FileName });
                record.Parameters.Add(new NpgsqlParameter<string> { TypedValue = next.Checksum });
                await record.ExecuteNonQueryAsync(cancellationToken);
            }

            await transaction.CommitAsync(cancellationToken);
            applied.Add(next);
            _logger.LogInformation("Applied database migration {Migration}", next.FileName);
        }
    }

    /// <summary>Verifies what is recorded against the embedded migrations; returns the next one to apply, or null.</summary>
    private Migration? Check(Dictionary<int, (string FileName, string Checksum)> recorded, ref bool warnedUnknown)
    {
        foreach (var migration in _migrations)
        {
            if (recorded.TryGetValue(migration.Version, out var row) && row.Checksum != migration.Checksum)
            {
                throw new SchemaMigrationException(
                    $"migration {migration.FileName} was changed after it was applied (recorded as {row.FileName} with checksum {row.Checksum}, " +
                    $"the file now has {migration.Checksum}); applied migrations must not be edited: restore the file and put the change in a new migration");
            }
        }

        int latest = _migrations.Length == 0 ? 0 : _migrations[^1].Version;
        var unknown = recorded.Keys.Where(v => v > latest).Order().ToArray();
        var next = _migrations.FirstOrDefault(m => !recorded.ContainsKey(m.Version));
        if (next is not null && recorded.Keys.Any(v => v > next.Version))
        {
            throw new SchemaMigrationException(
                $"migration {next.FileName} is not applied but later versions are ({string.Join(", ", recorded.Keys.Where(v => v > next.Version).Order().Select(v => recorded[v].FileName))}); " +
                "applying it now would run migrations out of order");
        }

        if (unknown.Length > 0 && !warnedUnknown)
        {
            warnedUnknown = true;
            _logger.LogWarning(
                "The database has migrations this binary does not know ({Migrations}); a newer version of the service migrated it",
                string.Join(", ", unknown.Select(v => recorded[v].FileName)));
        }

        return next;
    }

    private static async Task<Dictionary<int, (string FileName, string Checksum)>> ReadRecordedAsync(
        NpgsqlConnection connection, NpgsqlTransaction transaction, CancellationToken cancellationToken)
    {
        var recorded = new Dictionary<int, (string, string)>();
        await using var command = new NpgsqlCommand("SELECT version, file_name, checksum FROM schema_migrations", connection, transaction);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
            recorded[reader.GetInt32(0)] = (reader.GetString(1), reader.GetString(2));
        return recorded;
    }

    private static async Task ExecuteAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, string sql, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(sql, connection, transaction) { CommandTimeout = 0 };
        await command.ExecuteNonQueryAsync(cancellationToken);
    }
}
