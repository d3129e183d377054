using AnomalyVae.IntegrationTests.Infrastructure;
using AnomalyVae.Storage;
using Npgsql;

namespace AnomalyVae.IntegrationTests.Storage;

/// <summary>The migrator against a real PostgreSQL server, each test in a fresh database.</summary>
[Collection(InfrastructureCollection.Name)]
public class SchemaMigratorTests(TestInfrastructure infrastructure)
{
    private static readonly string[] s_tables = ["anomalies", "consumer_offsets", "scoring_stats", "schema_migrations"];

    /// <summary>A new, empty database for one test (dropped on dispose), on the shared test server.</summary>
    private Task<TestDatabase> CreateDatabaseAsync() => TestDatabase.CreateAsync(infrastructure, "migrator", migrated: false, CancellationToken.None);

    [Fact]
    public async Task AppliesEveryMigrationToAnEmptyDatabase()
    {
        await using var database = await CreateDatabaseAsync();
        var migrator = new SchemaMigrator(database.DataSource);
        var applied = await migrator.MigrateAsync();

        Assert.Equal(SchemaMigrator.EmbeddedMigrations().Select(m => m.FileName), applied.Select(m => m.FileName));
        foreach (var table in s_tables)
            Assert.True(await database.ScalarAsync<bool>($"SELECT to_regclass('public.{table}') IS NOT NULL"), $"table {table} is missing");
        var recorded = await database.RowsAsync("SELECT version, file_name, checksum FROM schema_migrations ORDER BY version",
            r => (r.GetInt32(0), r.GetString(1), r.GetString(2)));
        Assert.Equal(applied.Select(m => (m.Version, m.FileName, m.Checksum)), recorded);
        // The documented indexes exist.
        var indexes = await database.RowsAsync("SELECT indexname FROM pg_indexes WHERE tablename = 'anomalies'", r => r.GetString(0));
        Assert.Contains("anomalies_detector_detected_idx", indexes);
        Assert.Contains("anomalies_entity_detected_idx", indexes);
        Assert.Contains("anomalies_event_time_idx", indexes);
        // Partitioned by day (migration 0009): the legacy partition and a week ahead.
        Assert.Equal("p", await database.ScalarAsync<string>("SELECT relkind::text FROM pg_class WHERE relname = 'anomalies'"));
        Assert.True(await database.ScalarAsync<long>("SELECT count(*) FROM pg_inherits WHERE inhparent = 'anomalies'::regclass") >= 8);
    }

    [Fact]
    public async Task ASecondRunIsANoOp()
    {
        await using var database = await CreateDatabaseAsync();
        var migrator = new SchemaMigrator(database.DataSource);
        Assert.NotEmpty(await migrator.MigrateAsync());
        var before = await database.RowsAsync("SELECT version, applied_at FROM schema_migrations ORDER BY version", r => (r.GetInt32(0), r.GetDateTime(1)));

        Assert.Empty(await migrator.MigrateAsync());
        Assert.Empty(await new SchemaMigrator(database.DataSource).MigrateAsync());
        var after = await database.RowsAsync("SELECT version, applied_at FROM schema_migrations ORDER BY version", r => (r.GetInt32(0), r.GetDateTime(1)));
        Assert.Equal(before, after);
    }

    [Fact]
    public async Task ConcurrentRunsApplyEachMigrationOnce()
    {
        // Several rounds: the race between processes starting together is what the advisory lock is for.
        for (var round = 0; round < 3; round++)
        {
            await using var database = await CreateDatabaseAsync();
            var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var runs = Enumerable.Range(0, 4).Select(async _ =>
            {
                // Separate data sources: separate pools, like separate processes.
                await using var dataSource = NpgsqlDataSource.Create(database.ConnectionString);
                var migrator = new SchemaMigrator(dataSource);
                await gate.Task;
                return await migrator.MigrateAsync();
            }).ToArray();
            gate.SetResult();
            var results = await Task.WhenAll(runs);

            var appliedVersions = results.SelectMany(r => r.Select(m => m.Version)).Order().ToArray();
            Assert.Equal(SchemaMigrator.EmbeddedMigrations().Select(m => m.Version), appliedVersions);
            Assert.Equal(appliedVersions.Length, await database.ScalarAsync<long>("SELECT count(*) FROM schema_migrations"));
        }
    }

    [Fact]
    public async Task AnEditedAppliedMigrationIsRefusedBeforeAnythingElseRuns()
    {
        await using var database = await CreateDatabaseAsync();
        var embedded = SchemaMigrator.EmbeddedMigrations();
        await new SchemaMigrator(database.DataSource).MigrateAsync();

        var edited = embedded.Select(m => m.Version == 2 ? new Migration(m.FileName, m.Sql + "\n-- edited\n") : m)
            .Append(new Migration($"{embedded[^1].Version + 1:D4}_later.sql", "CREATE TABLE later_table (x int)"));
        var e = await Assert.ThrowsAsync<SchemaMigrationException>(() => new SchemaMigrator(database.DataSource, edited).MigrateAsync());
        Assert.Contains(embedded[1].FileName, e.Message);
        Assert.Contains("changed after it was applied", e.Message);
        Assert.Contains(embedded[1].Checksum, e.Message);
        // The pending migration was not applied.
        Assert.False(await database.ScalarAsync<bool>("SELECT to_regclass('public.later_table') IS NOT NULL"));
        Assert.Equal(embedded.Count, await database.ScalarAsync<long>("SELECT count(*) FROM schema_migrations"));
    }

    [Fact]
    public async Task AFailingMigrationIsRolledBackAndNamed()
    {
        await using var database = await CreateDatabaseAsync();
        var embedded = SchemaMigrator.EmbeddedMigrations();
        var broken = new Migration($"{embedded[^1].Version + 1:D4}_broken.sql", "CREATE TABLE half_done (x int);\nSELECT 1 / 0;");
        var e = await Assert.ThrowsAsync<SchemaMigrationException>(() => new SchemaMigrator(database.DataSource, [.. embedded, broken]).MigrateAsync());
        Assert.Contains(broken.FileName, e.Message);
        Assert.Contains("division by zero", e.Message);
        Assert.False(await database.ScalarAsync<bool>("SELECT to_regclass('public.half_done') IS NOT NULL"));
        // The migrations before it stay applied.
        Assert.Equal(embedded.Count, await database.ScalarAsync<long>("SELECT count(*) FROM schema_migrations"));
    }

    [Fact]
    public async Task ADatabaseMigratedByANewerBinaryIsAccepted()
    {
        await using var database = await CreateDatabaseAsync();
        var embedded = SchemaMigrator.EmbeddedMigrations();
        var newer = new Migration($"{embedded[^1].Version + 1:D4}_newer.sql", "CREATE TABLE newer_table (x int)");
        Assert.Equal(embedded.Count + 1, (await new SchemaMigrator(database.DataSource, [.. embedded, newer]).MigrateAsync()).Count);
        Assert.Empty(await new SchemaMigrator(database.DataSource).MigrateAsync());
    }

    [Fact]
    public async Task MigrationsAreNeverAppliedOutOfOrder()
    {
        await using var database = await CreateDatabaseAsync();
        // A database where version 999 is recorded but 1 is not (migrated from a diverged branch).
        await database.ExecuteAsync("""
            CREATE TABLE schema_migrations (version integer PRIMARY KEY, file_name text NOT NULL, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now());
            INSERT INTO schema_migrations (version, file_name, checksum) VALUES (999, '0999_elsewhere.sql', 'x');
            """);
        var e = await Assert.ThrowsAsync<SchemaMigrationException>(() => new SchemaMigrator(database.DataSource).MigrateAsync());
        Assert.Contains("out of order", e.Message);
        Assert.Contains("0999_elsewhere.sql", e.Message);
        Assert.False(await database.ScalarAsync<bool>("SELECT to_regclass('public.anomalies') IS NOT NULL"));
    }

    [Fact]
    public async Task RowsLandInTheirDaysPartitionAndARowNoPartitionTakesIsRefused()
    {
        await using var database = await CreateDatabaseAsync();
        await new SchemaMigrator(database.DataSource).MigrateAsync();
        const string insert = """
            INSERT INTO anomalies (detector, topic, "partition", "offset", entity, event_time, detected_at, score, p_value, threshold, model_version, contributions, event)
            VALUES ('press', 'events', 3, 1234, 'm-1', '2024-05-01T12:00:00Z', {0}, 42.5, 0.0001, 30, 'v1', '[{{"feature": "temp", "score": 40.1}}]', '{{"temp": 99}}')
            RETURNING tableoid::regclass::text
            """;
        string At(string detectedAt) => string.Format(System.Globalization.CultureInfo.InvariantCulture, insert, detectedAt);
        Assert.Equal("anomalies_legacy", await database.ScalarAsync<string>(At("now()")));
        var inTwoDays = DateTime.UtcNow.Date.AddDays(2);
        Assert.Equal($"anomalies_p{inTwoDays:yyyyMMdd}", await database.ScalarAsync<string>(At($"'{inTwoDays:yyyy-MM-dd}T06:00:00Z'")));
        // Past the partitions made ahead: an error (no DEFAULT partition to park it in).
        var e = await Assert.ThrowsAsync<PostgresException>(() => database.ExecuteAsync(At("now() + interval '30 days'")));
        Assert.Equal(PostgresErrorCodes.CheckViolation, e.SqlState);
        Assert.Contains("no partition", e.MessageText);
    }

    [Theory]
    [InlineData("score", "'NaN'")]
    [InlineData("score", "'Infinity'")]
    [InlineData("p_value", "1.5")]
    [InlineData("p_value", "'NaN'")]
    [InlineData("contributions", "'{}'")]
    [InlineData("event", "'[1]'")]
    [InlineData("\"offset\"", "-1")]
    public async Task ChecksKeepBrokenRowsOut(string column, string value)
    {
        await using var database = await CreateDatabaseAsync();
        await new SchemaMigrator(database.DataSource).MigrateAsync();
        var values = new Dictionary<string, string>
        {
            ["detector"] = "'press'",
            ["topic"] = "'events'",
            ["\"partition\""] = "0",
            ["\"offset\""] = "1",
            ["score"] = "1",
            ["p_value"] = "0.5",
            ["threshold"] = "1",
            ["model_version"] = "'v1'",
            ["contributions"] = "'[]'",
            ["event"] = "'{}'",
        };
        await database.ExecuteAsync($"INSERT INTO anomalies ({string.Join(", ", values.Keys)}) VALUES ({string.Join(", ", values.Values)})");
        values[column] = value;
        values["\"offset\""] = column == "\"offset\"" ? value : "2";
        var e = await Assert.ThrowsAsync<PostgresException>(() =>
            database.ExecuteAsync($"INSERT INTO anomalies ({string.Join(", ", values.Keys)}) VALUES ({string.Join(", ", values.Values)})"));
        Assert.Equal(PostgresErrorCodes.CheckViolation, e.SqlState);
    }

    [Fact]
    public async Task OffsetsAndStatsTablesTakeTheirRows()
    {
        await using var database = await CreateDatabaseAsync();
        await new SchemaMigrator(database.DataSource).MigrateAsync();
        await database.ExecuteAsync("""
            INSERT INTO consumer_offsets (detector, topic, "partition", next_offset) VALUES ('press', 'events', 0, 10)
            ON CONFLICT (detector, topic, "partition") DO UPDATE SET next_offset = EXCLUDED.next_offset, updated_at = now();
            INSERT INTO consumer_offsets (detector, topic, "partition", next_offset) VALUES ('press', 'events', 0, 25)
            ON CONFLICT (detector, topic, "partition") DO UPDATE SET next_offset = EXCLUDED.next_offset, updated_at = now();
            INSERT INTO scoring_stats (detector, window_start, window_seconds, model_version, events_scored, events_flagged, events_dead_lettered, score_p50, score_p90, score_p99, score_max)
            VALUES ('press', '2024-05-01T12:00:00Z', 60, 'v1', 1000, 10, 2, 1.5, 3.0, 9.0, 40.0);
            INSERT INTO scoring_stats (detector, window_start, window_seconds, model_version, events_dead_lettered)
            VALUES ('press', '2024-05-01T12:01:00Z', 60, 'v1', 5);
            """);
        Assert.Equal(25, await database.ScalarAsync<long>("SELECT next_offset FROM consumer_offsets"));
        Assert.Equal(2, await database.ScalarAsync<long>("SELECT count(*) FROM scoring_stats"));
        var unordered = await Assert.ThrowsAsync<PostgresException>(() => database.ExecuteAsync("""
            INSERT INTO scoring_stats (detector, window_start, window_seconds, model_version, events_scored, score_p50, score_p90, score_p99, score_max)
            VALUES ('press', '2024-05-01T12:02:00Z', 60, 'v1', 10, 5, 3, 9, 40)
            """));
        Assert.Equal("scoring_stats_quantiles_ordered", unordered.ConstraintName);
    }
}
