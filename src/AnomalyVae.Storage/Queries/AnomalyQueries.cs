using System.Text;
using System.Text.Json;
using AnomalyVae.Model;
using Npgsql;
using NpgsqlTypes;

namespace AnomalyVae.Storage;

/// <summary>Filters of an anomaly listing; every field is optional except the page size.</summary>
/// <param name="From">Inclusive lower bound on detected_at.</param>
/// <param name="To">Exclusive upper bound on detected_at.</param>
/// <param name="Incident">Only the anomalies of this incident.</param>
public sealed record AnomalyFilter(
    string? Detector = null,
    string? Entity = null,
    DateTimeOffset? From = null,
    DateTimeOffset? To = null,
    double? MinScore = null,
    int Limit = AnomalyFilter.DefaultLimit,
    AnomalyCursor? After = null,
    long? Incident = null)
{
    public const int DefaultLimit = 50;
    public const int MaxLimit = 1000;
}

/// <summary>One feature's share of an anomaly score.</summary>
public sealed record FeatureContribution(string Feature, double Score);

/// <summary>A flagged event as listed: where it came from, how anomalous, and its top features.</summary>
public sealed record AnomalySummary(
    long Id,
    string Detector,
    string? Entity,
    DateTimeOffset? EventTime,
    DateTimeOffset DetectedAt,
    double Score,
    double PValue,
    double Threshold,
    string ModelVersion,
    IReadOnlyList<FeatureContribution> TopFeatures);

/// <summary>A label a user gave an anomaly.</summary>
public sealed record AnomalyFeedback(long Id, string Label, string? Note, DateTimeOffset CreatedAt, string Source);

/// <summary>Everything about one flagged event: all contributions, the original event and its feedback.</summary>
public sealed record AnomalyDetail(
    long Id,
    string Detector,
    string Topic,
    int Partition,
    long Offset,
    string? Entity,
    DateTimeOffset? EventTime,
    DateTimeOffset DetectedAt,
    double Score,
    double PValue,
    double Threshold,
    string ModelVersion,
    IReadOnlyList<FeatureContribution> Contributions,
    JsonElement Event,
    IReadOnlyList<AnomalyFeedback> Feedback);

/// <summary>One page of anomalies, newest first, and the cursor of the next page (null on the last).</summary>
public sealed record AnomalyPage(IReadOnlyList<AnomalySummary> Items, AnomalyCursor? Next);

/// <summary>
/// A detector's score drift within Retraining:DriftWindow: the PSI of its latest model version's score bins against
/// the calibration shares (docs/streaming.md#retraining-samples-and-drift). <c>Status</c> is "ok", "drift" or
/// "unknown" (too few events), a contract: retraining triggers on "drift". <c>Psi</c> is null when the window has no
/// scored event, <c>ModelVersion</c> when it has no window at all.
/// </summary>
public sealed record DetectorDrift(string Status, double? Psi, long Events, string? ModelVersion);

/// <summary>A detector's state: active model, threshold, recent flag rate, drift (see <see cref="DetectorDrift"/>).</summary>
public sealed record DetectorStatus(
    string Detector,
    string? ActiveModelVersion,
    double? Threshold,
    string? ThresholdSource,
    long EventsScoredLastHour,
    long EventsFlaggedLastHour,
    double? FlagRateLastHour,
    long AnomaliesLastHour,
    DateTimeOffset? LastDetectedAt,
    string DriftStatus,
    double? DriftPsi,
    long DriftEvents);

/// <summary>
/// The read side of the anomaly store, shared by the HTTP API and the CLI (one implementation, no HTTP in between).
/// Every value from a caller travels as a query parameter; the SQL text is assembled only from constant fragments.
/// </summary>
/// <param name="dataSource">The database.</param>
/// <param name="drift">Retraining:DriftThreshold, :DriftWindow and :DriftMinEvents (defaults when null).</param>
public sealed class AnomalyQueries(NpgsqlDataSource dataSource, DriftRule? drift = null)
{
    private readonly DriftRule _drift = drift ?? new DriftRule();

    /// <summary>Number of contributions listed per anomaly in a page (the detail has all of them).</summary>
    public const int TopFeatureCount = 3;

    // A detector's score bins summed per bin over the windows of its most recent model version that started within
    // the drift window ($1, an interval); "d" is the detector's row. Reads scoring_stats by its primary key prefix.
    private const string DriftBins = """
        LEFT JOIN LATERAL (
          SELECT v.model_version,
                 ARRAY(SELECT sum(x.b)::bigint
                       FROM scoring_stats s, unnest(s.score_bins) WITH ORDINALITY AS x(b, k)
                       WHERE s.detector = d.detector AND s.model_version = v.model_version AND s.window_start >= now() - $1::interval
                       GROUP BY x.k ORDER BY x.k) AS bins
          FROM (SELECT s.model_version FROM scoring_stats s WHERE s.detector = d.detector AND s.score_bins IS NOT NULL
                ORDER BY s.window_start DESC, s.updated_at DESC LIMIT 1) v
        ) drift ON true
        """;

    private const string SummaryColumns =
        "id, detector, entity, event_time, detected_at, score, p_value, threshold, model_version, contributions::text";

    /// <summary>A page of anomalies matching <paramref name="filter"/>, newest first (detected_at desc, id desc).</summary>
    public async Task<AnomalyPage> ListAsync(AnomalyFilter filter, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(filter);
        ArgumentOutOfRangeException.ThrowIfLessThan(filter.Limit, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(filter.Limit, AnomalyFilter.MaxLimit);
        if (filter.MinScore is { } m && !double.IsFinite(m))
            throw new ArgumentException("The minimum score must be a finite number.", nameof(filter));

        await using var command = dataSource.CreateCommand();
        var sql = new StringBuilder("SELECT ").Append(SummaryColumns).Append(" FROM anomalies WHERE true");
        if (filter.Detector is not null)
            sql.Append(" AND detector = ").Append(Add(command, filter.Detector, NpgsqlDbType.Text));
        if (filter.Entity is not null)
            sql.Append(" AND entity = ").Append(Add(command, filter.Entity, NpgsqlDbType.Text));
        if (filter.From is { } from)
            sql.Append(" AND detected_at >= ").Append(Add(command, from.ToUniversalTime(), NpgsqlDbType.TimestampTz));
        if (filter.To is { } to)
            sql.Append(" AND detected_at < ").Append(Add(command, to.ToUniversalTime(), NpgsqlDbType.TimestampTz));
        if (filter.Incident is { } incident)
            sql.Append(" AND incident_id = ").Append(Add(command, incident, NpgsqlDbType.Bigint));
        if (filter.MinScore is { } minScore)
            sql.Append(" AND score >= ").Append(Add(command, minScore, NpgsqlDbType.Double));
        if (filter.After is { } after)
        {
            sql.Append(" AND (detected_at, id) < (")
                .Append(Add(command, after.DetectedAt.ToUniversalTime(), NpgsqlDbType.TimestampTz)).Append(", ")
                .Append(Add(command, after.Id, NpgsqlDbType.Bigint)).Append(')');
        }
        // One row more than asked tells whether another page exists.
        sql.Append(" ORDER BY detected_at DESC, id DESC LIMIT ").Append(Add(command, filter.Limit + 1, NpgsqlDbType.Integer));
        command.CommandText = sql.ToString();

        var items = new List<AnomalySummary>(Math.Min(filter.Limit + 1, 256));
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken))
        {
            while (await reader.ReadAsync(cancellationToken))
            {
                items.Add(new AnomalySummary(
                    reader.GetInt64(0), reader.GetString(1), NullableString(reader, 2), NullableTime(reader, 3), Time(reader, 4),
                    reader.GetDouble(5), reader.GetDouble(6), reader.GetDouble(7), reader.GetString(8),
                    ParseContributions(reader.GetString(9), TopFeatureCount)));
            }
        }

        AnomalyCursor? next = null;
        if (items.Count > filter.Limit)
        {
            items.RemoveAt(items.Count - 1);
            next = new AnomalyCursor(items[^1].DetectedAt, items[^1].Id);
        }
        return new AnomalyPage(items, next);
    }

    /// <summary>One anomaly with all its contributions, its event and its feedback; null when there is no such id.</summary>
    public async Task<AnomalyDetail?> GetAsync(long id, CancellationToken cancellationToken = default)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        AnomalyDetail? detail;
        await using (var command = new NpgsqlCommand(
            """
            SELECT id, detector, topic, "partition", "offset", entity, event_time, detected_at, score, p_value, threshold,
                   model_version, contributions::text, event::text
            FROM anomalies WHERE id = $1
            """, connection))
        {
            command.Parameters.Add(new NpgsqlParameter<long> { TypedValue = id });
            await using var reader = await command.ExecuteReaderAsync(cancellationToken);
            if (!await reader.ReadAsync(cancellationToken))
                return null;
            using var eventJson = JsonDocument.Parse(reader.GetString(13));
            detail = new AnomalyDetail(
                reader.GetInt64(0), reader.GetString(1), reader.GetString(2), reader.GetInt32(3), reader.GetInt64(4),
                NullableString(reader, 5), NullableTime(reader, 6), Time(reader, 7), reader.GetDouble(8), reader.GetDouble(9),
                reader.GetDouble(10), reader.GetString(11), ParseContributions(reader.GetString(12), int.MaxValue),
                eventJson.RootElement.Clone(), []);
        }

        var feedback = new List<AnomalyFeedback>();
        await using (var command = new NpgsqlCommand(
            "SELECT id, label, note, created_at, source FROM anomaly_feedback WHERE anomaly_id = $1 ORDER BY created_at DESC, id DESC",
            connection))
        {
            command.Parameters.Add(new NpgsqlParameter<long> { TypedValue = id });
            await using var reader = await command.ExecuteReaderAsync(cancellationToken);
            while (await reader.ReadAsync(cancellationToken))
                feedback.Add(new AnomalyFeedback(reader.GetInt64(0), reader.GetString(1), NullableString(reader, 2), Time(reader, 3), reader.GetString(4)));
        }
        return detail with { Feedback = feedback };
    }

    /// <summary>
    /// Every detector known from the registry, the anomalies or the scoring statistics, with its active model,
    /// threshold (the active model's calibration, else the one in force at its latest anomaly), flag rate over the
    /// last hour (scoring_stats windows that started within the hour) and drift (as <see cref="DriftAsync"/>).
    /// </summary>
    public async Task<IReadOnlyList<DetectorStatus>> DetectorsAsync(CancellationToken cancellationToken = default)
    {
        // The recursive part walks anomalies_detector_detected_idx one detector at a time (a loose index scan),
        // so listing detectors does not read every anomaly row.
        await using var command = dataSource.CreateCommand(
            """
            WITH RECURSIVE anomaly_detectors(detector) AS (
              (SELECT detector FROM anomalies ORDER BY detector LIMIT 1)
              UNION ALL
              SELECT (SELECT a.detector FROM anomalies a WHERE a.detector > d.detector ORDER BY a.detector LIMIT 1)
              FROM anomaly_detectors d WHERE d.detector IS NOT NULL
            ),
            detectors AS (
              SELECT detector FROM anomaly_detectors WHERE detector IS NOT NULL
              UNION SELECT detector FROM models
              UNION SELECT detector FROM scoring_stats
            )
            SELECT d.detector,
                   m.version,
                   (m.metadata ->> 'threshold')::double precision,
                   latest.threshold,
                   COALESCE(stats.scored, 0), COALESCE(stats.flagged, 0),
                   (SELECT count(*) FROM anomalies a WHERE a.detector = d.detector AND a.detected_at >= now() - interval '1 hour'),
                   latest.detected_at,
                   drift.model_version, drift.bins
            FROM detectors d
            LEFT JOIN models m ON m.detector = d.detector AND m.status = 'active'
            LEFT JOIN LATERAL (
              SELECT a.threshold, a.detected_at FROM anomalies a WHERE a.detector = d.detector
              ORDER BY a.detected_at DESC, a.id DESC LIMIT 1
            ) latest ON true
            LEFT JOIN LATERAL (
              SELECT sum(s.events_scored)::bigint AS scored, sum(s.events_flagged)::bigint AS flagged
              FROM scoring_stats s WHERE s.detector = d.detector AND s.window_start >= now() - interval '1 hour'
            ) stats ON true
            """ + "\n" + DriftBins + "\n" + """
            ORDER BY d.detector
            """);
        command.Parameters.Add(new NpgsqlParameter<TimeSpan> { TypedValue = _drift.DriftWindow, NpgsqlDbType = NpgsqlDbType.Interval });
        var detectors = new List<DetectorStatus>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            double? modelThreshold = reader.IsDBNull(2) ? null : reader.GetDouble(2);
            double? rowThreshold = reader.IsDBNull(3) ? null : reader.GetDouble(3);
            long scored = reader.GetInt64(4), flagged = reader.GetInt64(5);
            var drift = Drift(reader, 8);
            detectors.Add(new DetectorStatus(
                reader.GetString(0),
                NullableString(reader, 1),
                modelThreshold ?? rowThreshold,
                modelThreshold is not null ? "active_model" : rowThreshold is not null ? "latest_anomaly" : null,
                scored,
                flagged,
                scored > 0 ? (double)flagged / scored : null,
                reader.GetInt64(6),
                NullableTime(reader, 7),
                drift.Status,
                drift.Psi,
                drift.Events));
        }
        return detectors;
    }

    /// <summary>
    /// The score drift of <paramref name="detector"/>: its scoring_stats windows of its most recent model version that
    /// started within Retraining:DriftWindow, bins summed, compared with the calibration shares (<see cref="ScoreDrift"/>).
    /// An unknown detector is "unknown" with no events.
    /// </summary>
    public async Task<DetectorDrift> DriftAsync(string detector, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(detector);
        await using var command = dataSource.CreateCommand("SELECT drift.model_version, drift.bins FROM (SELECT $2::text AS detector) d " + DriftBins);
        command.Parameters.Add(new NpgsqlParameter<TimeSpan> { TypedValue = _drift.DriftWindow, NpgsqlDbType = NpgsqlDbType.Interval });
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = detector, NpgsqlDbType = NpgsqlDbType.Text });
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        return await reader.ReadAsync(cancellationToken) ? Drift(reader, 0) : new DetectorDrift(ScoreDrift.Unknown, null, 0, null);
    }

    /// <summary>Reads (model_version, bins) at <paramref name="column"/> and judges them.</summary>
    private DetectorDrift Drift(NpgsqlDataReader reader, int column)
    {
        string? version = NullableString(reader, column);
        var bins = reader.IsDBNull(column + 1) ? [] : reader.GetFieldValue<long[]>(column + 1);
        long events = bins.Sum();
        if (events == 0 || bins.Length != ScoreDrift.BinCount)
            return new DetectorDrift(ScoreDrift.Unknown, null, events, version);
        double psi = ScoreDrift.PopulationStabilityIndex(bins);
        return new DetectorDrift(ScoreDrift.Status(psi, events, _drift.DriftThreshold, _drift.DriftMinEvents), psi, events, version);
    }

    private static string Add<T>(NpgsqlCommand command, T value, NpgsqlDbType type)
    {
        command.Parameters.Add(new NpgsqlParameter<T> { TypedValue = value, NpgsqlDbType = type });
        return "$" + command.Parameters.Count.ToString(System.Globalization.CultureInfo.InvariantCulture);
    }

    private static string? NullableString(NpgsqlDataReader reader, int column) => reader.IsDBNull(column) ? null : reader.GetString(column);

    private static DateTimeOffset Time(NpgsqlDataReader reader, int column) => new(reader.GetFieldValue<DateTime>(column), TimeSpan.Zero);

    private static DateTimeOffset? NullableTime(NpgsqlDataReader reader, int column) => reader.IsDBNull(column) ? null : Time(reader, column);

    /// <summary>Reads the contributions column ([{"feature","score"}...], largest first), keeping the first <paramref name="count"/>.</summary>
    private static FeatureContribution[] ParseContributions(string json, int count)
    {
        using var document = JsonDocument.Parse(json);
        var result = new List<FeatureContribution>();
        foreach (var item in document.RootElement.EnumerateArray())
        {
            if (result.Count >= count)
                break;
            if (item.ValueKind == JsonValueKind.Object
                && item.TryGetProperty("feature", out var feature) && feature.ValueKind == JsonValueKind.String
                && item.TryGetProperty("score", out var score) && score.ValueKind == JsonValueKind.Number)
            {
                result.Add(new FeatureContribution(feature.GetString()!, score.GetDouble()));
            }
        }
        return [.. result];
    }
}
