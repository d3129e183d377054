using System.Diagnostics;
using System.Globalization;
using AnomalyVae.Storage;
using Npgsql;

namespace AnomalyVae.Tools;

/// <summary>
/// <c>bench queries</c>: latency of the API's anomaly list/filter queries (<see cref="AnomalyQueries"/>, the code the
/// HTTP API and CLI run) on a large partitioned table. <c>--load</c> fills a scratch database first: one daily partition
/// per day of <c>--days</c> ending today, each generated in SQL (generate_series) into a plain table and then attached,
/// which builds its indexes once instead of row by row. Rows: <c>--detectors</c> detectors, <c>--entities</c> entities
/// per detector plus one "hot" entity (e0) holding 5 % of the rows, like a stuck sensor. Then each query shape runs
/// <c>--runs</c> times with random parameters (seeded), and p50/p95 are printed per shape.
/// </summary>
internal static class QueryBenchmark
{
    public static int Run(string connectionString, bool load, long rows, int days, int detectors, int entities, int runs, TextWriter output)
    {
        using var dataSource = PostgresDataSource.Create(new NpgsqlConnectionStringBuilder(connectionString) { CommandTimeout = 0 }.ConnectionString);
        new SchemaMigrator(dataSource).MigrateAsync(CancellationToken.None).GetAwaiter().GetResult();
        var today = DateTime.UtcNow.Date;
        if (load)
            Load(dataSource, rows, days, detectors, entities, today, output);

        long total = Scalar<long>(dataSource, "SELECT count(*) FROM anomalies");
        long partitions = Scalar<long>(dataSource, "SELECT count(*) FROM pg_inherits WHERE inhparent = 'anomalies'::regclass");
        long maxId = Scalar<long>(dataSource, "SELECT coalesce(max(id), 0) FROM anomalies");
        int loadedDays = (int)Math.Max(1, Scalar<long>(dataSource,
            "SELECT coalesce(extract(day FROM now() - min(detected_at))::bigint + 1, 1) FROM anomalies"));
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"anomalies: {total:N0} rows in {partitions} partitions, {Scalar<string>(dataSource, "SELECT pg_size_pretty(sum(pg_total_relation_size(inhrelid))) FROM pg_inherits WHERE inhparent = 'anomalies'::regclass")} with indexes; {runs} runs per shape"));

        var queries = new AnomalyQueries(dataSource);
        var random = new Random(7);
        string Detector() => $"det{random.Next(detectors)}";
        string Entity() => $"e{1 + random.Next(entities)}";
        DateTimeOffset Day() => new(today.AddDays(-random.Next(loadedDays)), TimeSpan.Zero);
        // Each shape returns the milliseconds of the query it times (paging walks to its page untimed first).
        var shapes = new (string Name, Func<Task<double>> Query)[]
        {
            ("all, newest page", () => TimeAsync(() => queries.ListAsync(new AnomalyFilter()))),
            ("detector, newest page", () => TimeAsync(() => queries.ListAsync(new AnomalyFilter(Detector())))),
            ("detector + entity, newest page", () => TimeAsync(() => queries.ListAsync(new AnomalyFilter(Detector(), Entity())))),
            ("detector + entity + 1 day", () => { var d = Day(); return TimeAsync(() => queries.ListAsync(new AnomalyFilter(Detector(), Entity(), d, d.AddDays(1)))); }),
            ("detector + entity + 7 days", () => { var d = Day(); return TimeAsync(() => queries.ListAsync(new AnomalyFilter(Detector(), Entity(), d.AddDays(-6), d.AddDays(1)))); }),
            ("detector + hot entity + 1 day", () => { var d = Day(); return TimeAsync(() => queries.ListAsync(new AnomalyFilter(Detector(), "e0", d, d.AddDays(1)))); }),
            ("detector + 1 day, min score", () => { var d = Day(); return TimeAsync(() => queries.ListAsync(new AnomalyFilter(Detector(), null, d, d.AddDays(1), MinScore: 14))); }),
            ("detector + 1 day, 10th page", () => { var d = Day(); return PageAsync(queries, new AnomalyFilter(Detector(), null, d, d.AddDays(1)), 10); }),
            ("detector + entity, 3rd page", () => PageAsync(queries, new AnomalyFilter(Detector(), Entity()), 3)),
            ("one anomaly by id", () => TimeAsync(() => queries.GetAsync(1 + random.NextInt64(Math.Max(1, maxId))))),
        };
        output.WriteLine($"{"query shape",-34} {"p50 ms",8} {"p95 ms",8} {"max ms",8}");
        foreach (var (name, query) in shapes)
        {
            for (int i = 0; i < 5; i++)
                query().GetAwaiter().GetResult(); // warm the plan cache and connections
            var times = new List<double>(runs);
            for (int i = 0; i < runs; i++)
                times.Add(query().GetAwaiter().GetResult());
            times.Sort();
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{name,-34} {Percentile(times, 0.5),8:F2} {Percentile(times, 0.95),8:F2} {times[^1],8:F2}"));
        }
        return 0;
    }

    private static async Task<double> TimeAsync<T>(Func<Task<T>> query)
    {
        long start = Stopwatch.GetTimestamp();
        await query();
        return Stopwatch.GetElapsedTime(start).TotalMilliseconds;
    }

    /// <summary>Walks the cursor to page <paramref name="page"/> and times that page's query alone.</summary>
    private static async Task<double> PageAsync(AnomalyQueries queries, AnomalyFilter filter, int page)
    {
        var current = await queries.ListAsync(filter);
        for (int i = 2; i < page && current.Next is { } next; i++)
            current = await queries.ListAsync(filter with { After = next });
        var cursor = current.Next;
        return await TimeAsync(() => queries.ListAsync(filter with { After = cursor }));
    }

    private static double Percentile(List<double> sorted, double q) => sorted[Math.Min(sorted.Count - 1, (int)(q * sorted.Count))];

    private static void Load(NpgsqlDataSource dataSource, long rows, int days, int detectors, int entities, DateTime today, TextWriter output)
    {
        long perDay = (rows + days - 1) / days; // at least --rows in all
        var clock = Stopwatch.StartNew();
        // The migration's partitions up to today go (the bench database is a scratch one), so days before today can
        // be attached; the days ahead stay.
        using (var connection = dataSource.OpenConnection())
        {
            Execute(connection, "DROP TABLE IF EXISTS anomalies_legacy");
            Execute(connection, "SET maintenance_work_mem = '512MB'");
            for (int d = days - 1; d >= 0; d--)
            {
                var day = today.AddDays(-d);
                string name = $"anomalies_p{day:yyyyMMdd}";
                string from = day.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture) + " 00:00:00+00";
                string to = day.AddDays(1).ToString("yyyy-MM-dd", CultureInfo.InvariantCulture) + " 00:00:00+00";
                // Today's rows end now: the API's "newest" is then the real newest.
                double seconds = d == 0 ? Math.Max(60, (DateTime.UtcNow - day).TotalSeconds - 1) : 86_400;
                long baseId = (long)(days - 1 - d) * perDay;
                Execute(connection, $"DROP TABLE IF EXISTS {name}");
                Execute(connection, $"CREATE TABLE {name} (LIKE anomalies INCLUDING DEFAULTS INCLUDING CONSTRAINTS)");
                Execute(connection, string.Create(CultureInfo.InvariantCulture, $$"""
                    INSERT INTO {{name}} (id, detector, topic, "partition", "offset", entity, event_time, detected_at, score, p_value, threshold,
                                        model_version, contributions, event)
                    SELECT {{baseId}} + g, 'det' || (g % {{detectors}}), 'bench', (g % 8)::integer, {{baseId}} + g,
                           CASE WHEN g % 20 = 0 THEN 'e0' ELSE 'e' || (1 + (g * 7919) % {{entities}}) END,
                           t, t, 5 + (g % 1000) / 100.0, 0.001 * (1 + g % 10), 5, 'v1',
                           '[{"feature":"temperature","score":6.5},{"feature":"vibration","score":2.1},{"feature":"pressure","score":0.9}]'::jsonb,
                           '{"temperature":99.5,"vibration":0.5}'::jsonb
                    FROM generate_series(0::bigint, {{perDay - 1}}) g,
                         LATERAL (SELECT '{{from}}'::timestamptz + (g * {{seconds}} / {{perDay}}) * interval '1 second' AS t) x
                    """));
                Execute(connection, $"ALTER TABLE anomalies ATTACH PARTITION {name} FOR VALUES FROM ('{from}') TO ('{to}')");
                output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"loaded {name}: {perDay:N0} rows ({(days - d) * perDay:N0} in all, {clock.Elapsed.TotalSeconds:F0} s)"));
            }
            Execute(connection, $"SELECT setval('anomalies_id_seq', {(long)days * perDay})");
            Execute(connection, "ANALYZE anomalies");
        }
        output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"load: {(long)days * perDay:N0} rows in {clock.Elapsed.TotalSeconds:F0} s"));
    }

    private static void Execute(NpgsqlConnection connection, string sql)
    {
        using var command = new NpgsqlCommand(sql, connection) { CommandTimeout = 0 };
        command.ExecuteNonQuery();
    }

    private static T Scalar<T>(NpgsqlDataSource dataSource, string sql)
    {
        using var command = dataSource.CreateCommand(sql);
        return (T)command.ExecuteScalar()!;
    }
}
