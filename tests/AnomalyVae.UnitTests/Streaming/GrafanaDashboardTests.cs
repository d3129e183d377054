using System.Diagnostics.Metrics;
using System.Text.Json;
using System.Text.RegularExpressions;
using AnomalyVae.Streaming;
using AnomalyVae.Tests;

namespace AnomalyVae.UnitTests.Streaming;

/// <summary>
/// deploy/grafana/anomalyvae.json, checked without Grafana: it parses, every panel and query names a data source the
/// dashboard declares (and of the right kind), every metric its PromQL uses is one serve exports (read from serve's own
/// instruments), and every table and column its SQL uses exists in schemas/migrations.
/// </summary>
public sealed partial class GrafanaDashboardTests
{
    private static readonly JsonDocument Dashboard = JsonDocument.Parse(File.ReadAllText(RepositoryFiles.Path("deploy", "grafana", "anomalyvae.json")));

    // SQL words and functions the dashboard's queries may use; anything else must be a table, an alias or a column.
    private static readonly HashSet<string> SqlWords = new(StringComparer.OrdinalIgnoreCase)
    {
        "select", "distinct", "from", "where", "and", "or", "not", "is", "null", "in", "as", "group", "by", "order", "asc", "desc",
        "limit", "join", "left", "on", "count", "sum", "min", "max", "avg", "nullif", "coalesce", "float8", "having", "case", "when",
        "then", "else", "end", "true", "false",
    };

    [Fact]
    public void Every_panel_and_query_uses_a_declared_data_source_of_the_right_kind()
    {
        var root = Dashboard.RootElement;
        var declared = root.GetProperty("__inputs").EnumerateArray()
            .ToDictionary(i => "${" + i.GetProperty("name").GetString() + "}", i => i.GetProperty("pluginId").GetString());
        Assert.Equal(["grafana-postgresql-datasource", "prometheus"], declared.Values.Order(StringComparer.Ordinal));
        int queries = 0;
        foreach (var (source, target) in Targets())
        {
            string uid = source.GetProperty("uid").GetString()!;
            Assert.True(declared.TryGetValue(uid, out var plugin), $"undeclared data source {uid}");
            Assert.Equal(plugin, source.GetProperty("type").GetString());
            bool promql = target.TryGetProperty("expr", out _), sql = target.TryGetProperty("rawSql", out _);
            Assert.True(promql ^ sql, $"a query must be PromQL or SQL: {target}");
            Assert.Equal(promql ? "prometheus" : "grafana-postgresql-datasource", plugin);
            queries++;
        }
        Assert.True(queries >= 15, $"only {queries} queries");
        var ids = Panels().Select(p => p.GetProperty("id").GetInt32()).ToList();
        Assert.Equal(ids.Count, ids.Distinct().Count());
        Assert.All(Panels().Where(p => p.GetProperty("type").GetString() != "row"), p => Assert.True(p.TryGetProperty("datasource", out _)));
    }

    [Fact]
    public void Every_metric_in_the_PromQL_is_one_serve_exports()
    {
        var exported = ServeMetricNames();
        Assert.Contains("anomalyvae_events_flagged_total", exported);
        Assert.Contains("anomalyvae_alertmanager_delivery_seconds_bucket", exported);
        var used = Targets().Where(t => t.Target.TryGetProperty("expr", out _))
            .SelectMany(t => MetricName().Matches(t.Target.GetProperty("expr").GetString()!).Select(m => m.Value)).ToHashSet(StringComparer.Ordinal);
        Assert.True(used.Count >= 10, $"only {used.Count} metrics used");
        var unknown = used.Where(m => !exported.Contains(m)).ToList();
        Assert.True(unknown.Count == 0, "serve exports no " + string.Join(", ", unknown));
        // Flag rate, drift, lag and the alert queue are on it.
        Assert.Superset(new HashSet<string> { "anomalyvae_events_flagged_total", "anomalyvae_drift_psi", "anomalyvae_consumer_lag",
            "anomalyvae_alertmanager_queue_depth", "anomalyvae_alertmanager_dropped_total" }, used);
    }

    [Fact]
    public void Every_table_and_column_in_the_SQL_exists_in_the_migrations()
    {
        var schema = MigrationColumns();
        Assert.Contains("closed_at", schema["incidents"]);
        var queries = Targets().Where(t => t.Target.TryGetProperty("rawSql", out _)).Select(t => t.Target.GetProperty("rawSql").GetString()!)
            .Concat(Dashboard.RootElement.GetProperty("templating").GetProperty("list").EnumerateArray()
                .Where(v => v.GetProperty("datasource").GetProperty("uid").GetString() == "${DS_POSTGRES}").Select(v => v.GetProperty("query").GetString()!))
            .ToList();
        Assert.True(queries.Count >= 6, $"only {queries.Count} SQL queries");
        var tablesUsed = new HashSet<string>(StringComparer.Ordinal);
        foreach (var sql in queries)
        {
            var problems = SqlProblems(sql, schema, tablesUsed);
            Assert.True(problems.Count == 0, $"{sql}\n  " + string.Join("\n  ", problems));
        }
        Assert.Superset(new HashSet<string> { "incidents", "anomalies", "scoring_stats" }, tablesUsed);
    }

    [Theory]
    [InlineData("SELECT detector, count(*) FROM incidnets GROUP BY detector", "unknown table incidnets")]
    [InlineData("SELECT detector, closed FROM incidents", "closed")]
    [InlineData("SELECT i.entity, i.flagged FROM incidents i", "flagged")]
    public void The_SQL_check_catches_a_wrong_table_or_column(string sql, string problem)
    {
        var problems = SqlProblems(sql, MigrationColumns(), []);
        Assert.Contains(problems, p => p.Contains(problem, StringComparison.Ordinal));
    }

    /// <summary>Problems of one query: tables (after FROM/JOIN) that do not exist, and identifiers that are neither SQL words,
    /// tables, aliases, Grafana macros nor columns of the tables it reads.</summary>
    private static List<string> SqlProblems(string sql, Dictionary<string, HashSet<string>> schema, HashSet<string> tablesUsed)
    {
        var problems = new List<string>();
        // Grafana macros ($__timeFilter(x), $detector) and string literals are not SQL identifiers.
        var text = StringLiteral().Replace(Macro().Replace(sql, " "), " ");
        var tables = new Dictionary<string, string>(StringComparer.Ordinal); // alias or name -> table
        foreach (Match m in TableReference().Matches(text))
        {
            string table = m.Groups["table"].Value;
            if (!schema.ContainsKey(table))
            {
                problems.Add($"unknown table {table}");
                continue;
            }
            tablesUsed.Add(table);
            tables[table] = table;
            if (m.Groups["alias"].Success && !SqlWords.Contains(m.Groups["alias"].Value))
                tables[m.Groups["alias"].Value] = table;
        }
        var aliases = OutputAlias().Matches(text).Select(m => m.Groups["alias"].Value.Trim('"')).ToHashSet(StringComparer.Ordinal);
        var columns = tables.Values.SelectMany(t => schema[t]).ToHashSet(StringComparer.Ordinal);
        foreach (Match m in Identifier().Matches(text))
        {
            string word = m.Value.Trim().Trim('"');
            if (m.Groups["qualifier"].Success)
            {
                string qualifier = m.Groups["qualifier"].Value, column = m.Groups["column"].Value;
                if (!tables.TryGetValue(qualifier, out var table))
                    problems.Add($"unknown table or alias {qualifier}");
                else if (!schema[table].Contains(column))
                    problems.Add($"{table} has no column {column}");
                continue;
            }
            if (SqlWords.Contains(word) || tables.ContainsKey(word) || aliases.Contains(word) || columns.Contains(word))
                continue;
            problems.Add($"unknown column or word {word}");
        }
        return problems;
    }

    /// <summary>Columns per table, from CREATE TABLE blocks and ALTER TABLE .. ADD COLUMN in schemas/migrations.</summary>
    private static Dictionary<string, HashSet<string>> MigrationColumns()
    {
        var schema = new Dictionary<string, HashSet<string>>(StringComparer.Ordinal);
        foreach (var file in Directory.GetFiles(RepositoryFiles.Path("schemas", "migrations"), "*.sql").Order(StringComparer.Ordinal))
        {
            var sql = string.Join('\n', File.ReadLines(file).Select(l => l.Split("--")[0]));
            foreach (Match table in CreateTable().Matches(sql))
            {
                var columns = schema.TryGetValue(table.Groups["name"].Value, out var existing) ? existing : schema[table.Groups["name"].Value] = new(StringComparer.Ordinal);
                // The body up to the matching close paren: one definition per top-level comma.
                int depth = 1, i = table.Index + table.Length, start = i;
                var definitions = new List<string>();
                for (; i < sql.Length && depth > 0; i++)
                {
                    if (sql[i] == '(')
                        depth++;
                    else if (sql[i] == ')' && --depth == 0 || sql[i] == ',' && depth == 1)
                    {
                        definitions.Add(sql[start..i]);
                        start = i + 1;
                    }
                }
                foreach (var definition in definitions)
                {
                    var first = definition.Trim().Split([' ', '\n', '\t'], StringSplitOptions.RemoveEmptyEntries).FirstOrDefault()?.Trim('"');
                    if (first is not null && first.ToUpperInvariant() is not ("CONSTRAINT" or "PRIMARY" or "UNIQUE" or "CHECK" or "FOREIGN" or "EXCLUDE"))
                        columns.Add(first);
                }
            }
            foreach (Match add in AddColumn().Matches(sql))
            {
                if (schema.TryGetValue(add.Groups["table"].Value, out var columns))
                    columns.Add(add.Groups["column"].Value);
            }
        }
        return schema;
    }

    /// <summary>The series names serve's instruments expose: counters with _total, histograms with _bucket, _sum, _count.</summary>
    private static HashSet<string> ServeMetricNames()
    {
        var names = new HashSet<string>(StringComparer.Ordinal);
        using var listener = new MeterListener
        {
            InstrumentPublished = (instrument, _) =>
            {
                if (instrument.Meter.Name != ServiceMetrics.MeterName)
                    return;
                string name = PrometheusExposition.MetricName(instrument.Name);
                var type = instrument.GetType().GetGenericTypeDefinition();
                if (type == typeof(Counter<>) || type == typeof(ObservableCounter<>))
                    names.Add(name + "_total");
                else if (type == typeof(Histogram<>))
                    names.UnionWith([name + "_bucket", name + "_sum", name + "_count"]);
                else
                    names.Add(name);
            },
        };
        listener.Start();
        using (new ServiceMetrics())
        using (new AlertMetrics())
        {
            // Instruments are published as they are created.
        }
        return names;
    }

    private static IEnumerable<JsonElement> Panels() => Dashboard.RootElement.GetProperty("panels").EnumerateArray()
        .SelectMany(p => p.TryGetProperty("panels", out var nested) ? nested.EnumerateArray().Prepend(p) : [p]);

    private static IEnumerable<(JsonElement Source, JsonElement Target)> Targets() =>
        Panels().Where(p => p.TryGetProperty("targets", out _)).SelectMany(p => p.GetProperty("targets").EnumerateArray()
            .Select(t => (t.TryGetProperty("datasource", out var own) ? own : p.GetProperty("datasource"), t)));

    [GeneratedRegex(@"\banomalyvae_[a-z0-9_]+")]
    private static partial Regex MetricName();

    [GeneratedRegex(@"\$__\w+(\([^)]*\))?|\$\w+")]
    private static partial Regex Macro();

    [GeneratedRegex(@"'[^']*'")]
    private static partial Regex StringLiteral();

    [GeneratedRegex(@"\b(?:FROM|JOIN)\s+(?<table>[a-z_][a-z0-9_]*)(?:\s+(?:AS\s+)?(?<alias>[a-z_][a-z0-9_]*))?", RegexOptions.IgnoreCase)]
    private static partial Regex TableReference();

    [GeneratedRegex(@"\bAS\s+(?<alias>""[^""]+""|[a-z_][a-z0-9_]*)", RegexOptions.IgnoreCase)]
    private static partial Regex OutputAlias();

    [GeneratedRegex(@"(?<qualifier>[a-z_][a-z0-9_]*)\.(?<column>[a-z_][a-z0-9_]*)|""[^""]+""|\b[a-z_][a-z0-9_]*\b(?!\s*\()|\b(?<function>[a-z_][a-z0-9_]*)\s*(?=\()", RegexOptions.IgnoreCase)]
    private static partial Regex Identifier();

    [GeneratedRegex(@"CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?(?<name>[a-z_][a-z0-9_]*)\s*\(", RegexOptions.IgnoreCase)]
    private static partial Regex CreateTable();

    [GeneratedRegex(@"ALTER\s+TABLE\s+(?:ONLY\s+)?(?<table>[a-z_][a-z0-9_]*)\s+ADD\s+COLUMN\s+(?:IF\s+NOT\s+EXISTS\s+)?(?<column>[a-z_][a-z0-9_]*)", RegexOptions.IgnoreCase)]
    private static partial Regex AddColumn();
}
