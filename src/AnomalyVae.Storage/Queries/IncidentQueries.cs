using System.Text;
using System.Text.Json;
using Npgsql;
using NpgsqlTypes;

namespace AnomalyVae.Storage;

/// <summary>Filters of an incident listing; every field is optional except the page size.</summary>
/// <param name="Status">"open", "closed" or null (both).</param>
/// <param name="From">Incidents whose anomalies reach at least this time (last_at &gt;= From).</param>
/// <param name="To">Incidents that started before this time (first_at &lt; To).</param>
public sealed record IncidentFilter(
    string? Detector = null,
    string? Entity = null,
    string? Status = null,
    DateTimeOffset? From = null,
    DateTimeOffset? To = null,
    int Limit = AnomalyFilter.DefaultLimit,
    AnomalyCursor? After = null)
{
    public const string Open = "open";
    public const string Closed = "closed";

    public static bool IsStatus(string? status) => status is Open or Closed;
}

/// <summary>An incident: a run of anomalies of one entity (see migration 0007).</summary>
/// <param name="Status">"open" or "closed".</param>
/// <param name="TopFeatures">The features with the largest scores summed over its anomalies, largest first.</param>
public sealed record IncidentSummary(
    long Id,
    string Detector,
    string Entity,
    string Status,
    DateTimeOffset FirstAt,
    DateTimeOffset LastAt,
    DateTimeOffset? ClosedAt,
    long AnomalyCount,
    double PeakScore,
    double MinPValue,
    long PeakAnomalyId,
    IReadOnlyList<FeatureContribution> TopFeatures,
    DateTimeOffset OpenedAt,
    DateTimeOffset UpdatedAt);

/// <summary>One page of incidents, newest first, and the cursor of the next page (null on the last).</summary>
public sealed record IncidentPage(IReadOnlyList<IncidentSummary> Items, AnomalyCursor? Next);

/// <summary>The read side of incidents, shared by the HTTP API and the CLI. Values travel as query parameters only.</summary>
public sealed class IncidentQueries(NpgsqlDataSource dataSource)
{
    private const string Columns =
        "id, detector, entity, first_at, last_at, closed_at, anomaly_count, peak_score, min_p_value, peak_anomaly_id, feature_scores::text, opened_at, updated_at";

    /// <summary>A page of incidents matching <paramref name="filter"/>, newest first (opened_at desc, id desc).</summary>
    public async Task<IncidentPage> ListAsync(IncidentFilter filter, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(filter);
        ArgumentOutOfRangeException.ThrowIfLessThan(filter.Limit, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(filter.Limit, AnomalyFilter.MaxLimit);
        if (filter.Status is not null && !IncidentFilter.IsStatus(filter.Status))
            throw new ArgumentException("The status must be \"open\" or \"closed\".", nameof(filter));

        await using var command = dataSource.CreateCommand();
        var sql = new StringBuilder("SELECT ").Append(Columns).Append(" FROM incidents WHERE true");
        if (filter.Detector is not null)
            sql.Append(" AND detector = ").Append(Add(command, filter.Detector, NpgsqlDbType.Text));
        if (filter.Entity is not null)
            sql.Append(" AND entity = ").Append(Add(command, filter.Entity, NpgsqlDbType.Text));
        if (filter.Status == IncidentFilter.Open)
            sql.Append(" AND closed_at IS NULL");
        else if (filter.Status == IncidentFilter.Closed)
            sql.Append(" AND closed_at IS NOT NULL");
        if (filter.From is { } from)
            sql.Append(" AND last_at >= ").Append(Add(command, from.ToUniversalTime(), NpgsqlDbType.TimestampTz));
        if (filter.To is { } to)
            sql.Append(" AND first_at < ").Append(Add(command, to.ToUniversalTime(), NpgsqlDbType.TimestampTz));
        if (filter.After is { } after)
        {
            sql.Append(" AND (opened_at, id) < (")
                .Append(Add(command, after.DetectedAt.ToUniversalTime(), NpgsqlDbType.TimestampTz)).Append(", ")
                .Append(Add(command, after.Id, NpgsqlDbType.Bigint)).Append(')');
        }
        sql.Append(" ORDER BY opened_at DESC, id DESC LIMIT ").Append(Add(command, filter.Limit + 1, NpgsqlDbType.Integer));
        command.CommandText = sql.ToString();

        var items = new List<IncidentSummary>(Math.Min(filter.Limit + 1, 256));
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken))
        {
            while (await reader.ReadAsync(cancellationToken))
                items.Add(Read(reader, AnomalyQueries.TopFeatureCount));
        }
        AnomalyCursor? next = null;
        if (items.Count > filter.Limit)
        {
            items.RemoveAt(items.Count - 1);
            next = new AnomalyCursor(items[^1].OpenedAt, items[^1].Id);
        }
        return new IncidentPage(items, next);
    }

    /// <summary>One incident with all its features; null when there is no such id. Its anomalies are listed by
    /// <see cref="AnomalyQueries.ListAsync"/> with <see cref="AnomalyFilter.Incident"/>.</summary>
    public async Task<IncidentSummary?> GetAsync(long id, CancellationToken cancellationToken = default)
    {
        await using var command = dataSource.CreateCommand($"SELECT {Columns} FROM incidents WHERE id = $1");
        command.Parameters.Add(new NpgsqlParameter<long> { TypedValue = id });
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        return await reader.ReadAsync(cancellationToken) ? Read(reader, int.MaxValue) : null;
    }

    private static IncidentSummary Read(NpgsqlDataReader reader, int features)
    {
        DateTimeOffset? closed = reader.IsDBNull(5) ? null : Time(reader, 5);
        var sums = JsonSerializer.Deserialize<Dictionary<string, double>>(reader.GetString(10)) ?? [];
        var top = sums.OrderByDescending(f => f.Value).ThenBy(f => f.Key, StringComparer.Ordinal).Take(features)
            .Select(f => new FeatureContribution(f.Key, f.Value)).ToArray();
        return new IncidentSummary(
            reader.GetInt64(0), reader.GetString(1), reader.GetString(2), closed is null ? IncidentFilter.Open : IncidentFilter.Closed,
            Time(reader, 3), Time(reader, 4), closed, reader.GetInt64(6), reader.GetDouble(7), reader.GetDouble(8), reader.GetInt64(9),
            top, Time(reader, 11), Time(reader, 12));
    }

    private static DateTimeOffset Time(NpgsqlDataReader reader, int column) => new(reader.GetFieldValue<DateTime>(column), TimeSpan.Zero);

    private static string Add<T>(NpgsqlCommand command, T value, NpgsqlDbType type)
    {
        command.Parameters.Add(new NpgsqlParameter<T> { TypedValue = value, NpgsqlDbType = type });
        return "$" + command.Parameters.Count.ToString(System.Globalization.CultureInfo.InvariantCulture);
    }
}
