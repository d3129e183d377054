using System.Globalization;
using System.Text;
using System.Text.Json;
using AnomalyVae.Events;
using AnomalyVae.Inference;
using AnomalyVae.Model;
using Npgsql;

namespace AnomalyVae.Retraining;

/// <summary>A labelled anomaly's event: <see cref="IsTruePositive"/> is its latest label.</summary>
public sealed record LabelledEvent(byte[] Event, bool IsTruePositive);

/// <summary>Events decoded with one model's schema: raw input rows and which events decoded.</summary>
internal sealed record DecodedEvents(float[] X, float[] Mask, bool[] Decoded, int FeatureCount)
{
    /// <summary>The rows <paramref name="rows"/> as a table of <paramref name="schema"/>.</summary>
    public FeatureTable Table(FeatureSchema schema, IReadOnlyList<int> rows)
    {
        int f = FeatureCount;
        var x = new float[rows.Count * f];
        var mask = new float[rows.Count * f];
        for (int i = 0; i < rows.Count; i++)
        {
            X.AsSpan(rows[i] * f, f).CopyTo(x.AsSpan(i * f));
            Mask.AsSpan(rows[i] * f, f).CopyTo(mask.AsSpan(i * f));
        }
        return new FeatureTable(schema, x, mask);
    }
}

/// <summary>
/// What retraining and recalibration read from PostgreSQL (the tables of migration 0006 plus anomalies and their
/// feedback), and how events become model input. Events are the JSON objects serve stored.
/// </summary>
internal static class RetrainingData
{
    /// <summary>The latest label of an anomaly (labels are never overwritten; the newest one counts).</summary>
    private const string LatestLabel =
        "(SELECT f.label FROM anomaly_feedback f WHERE f.anomaly_id = a.id ORDER BY f.created_at DESC, f.id DESC LIMIT 1)";

    /// <summary>Events of the training sample, without those of anomalies whose latest label is true_positive; with
    /// <paramref name="within"/>, only those sampled within that time before now (the database's clock, which wrote
    /// sampled_at).</summary>
    public static Task<List<byte[]>> TrainingSampleAsync(NpgsqlConnection connection, string detector, CancellationToken cancellationToken,
        TimeSpan? within = null) =>
        EventsAsync(connection,
            $"""
            SELECT s.event::text FROM training_sample s
            WHERE s.detector = $1 AND ($2::interval IS NULL OR s.sampled_at >= now() - $2::interval) AND NOT EXISTS (
              SELECT 1 FROM anomalies a
              WHERE a.detector = s.detector AND a.topic = s.topic AND a."partition" = s.partition AND a."offset" = s."offset"
                AND {LatestLabel} = 'true_positive')
            ORDER BY s.slot
            """, detector, cancellationToken, within);

    /// <summary>Events of the recent-events ring, without those of anomalies whose latest label is true_positive
    /// when <paramref name="withoutTruePositives"/>.</summary>
    public static Task<List<byte[]>> RecentEventsAsync(NpgsqlConnection connection, string detector, bool withoutTruePositives, CancellationToken cancellationToken) =>
        EventsAsync(connection,
            $"""
            SELECT r.event::text FROM recent_events r
            WHERE r.detector = $1 AND ({(withoutTruePositives ? "false" : "true")} OR NOT EXISTS (
              SELECT 1 FROM anomalies a
              WHERE a.detector = r.detector AND a.topic = r.topic AND a."partition" = r.partition AND a."offset" = r."offset"
                AND {LatestLabel} = 'true_positive'))
            ORDER BY r.slot
            """, detector, cancellationToken);

    /// <summary>Events of the detector's labelled anomalies with their latest label, oldest anomaly first.</summary>
    public static async Task<List<LabelledEvent>> LabelledAsync(NpgsqlConnection connection, string detector, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(
            $"""
            SELECT event::text, label FROM (SELECT a.id, a.event, {LatestLabel} AS label FROM anomalies a WHERE a.detector = $1) labelled
            WHERE label IS NOT NULL ORDER BY id
            """, connection);
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = detector });
        var events = new List<LabelledEvent>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
            events.Add(new LabelledEvent(EventJson.FromJsonb(reader.GetString(0)), reader.GetString(1) == "true_positive"));
        return events;
    }

    private static async Task<List<byte[]>> EventsAsync(NpgsqlConnection connection, string sql, string detector, CancellationToken cancellationToken,
        TimeSpan? within = null)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = detector });
        if (sql.Contains("$2", StringComparison.Ordinal))
            command.Parameters.Add(new NpgsqlParameter { Value = within is { } w ? w : DBNull.Value, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Interval });
        var events = new List<byte[]>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
            events.Add(EventJson.FromJsonb(reader.GetString(0)));
        return events;
    }

    /// <summary>
    /// Decodes events as serve does (<see cref="EventDecoder"/>). An event that does not decode, or has none of the
    /// features present, is marked not decoded.
    /// </summary>
    public static DecodedEvents Decode(FeatureSchema schema, IReadOnlyList<byte[]> events)
    {
        var decoder = new EventDecoder(schema);
        int f = schema.Count;
        var x = new float[events.Count * f];
        var mask = new float[events.Count * f];
        var decoded = new bool[events.Count];
        for (int i = 0; i < events.Count; i++)
        {
            var result = decoder.Decode(events[i], x.AsSpan(i * f, f), mask.AsSpan(i * f, f));
            decoded[i] = result.IsSuccess && result.PresentFeatures > 0;
            if (!decoded[i])
            {
                x.AsSpan(i * f, f).Clear();
                mask.AsSpan(i * f, f).Clear();
            }
        }
        return new DecodedEvents(x, mask, decoded, f);
    }

    /// <summary>
    /// The feature cells of events as CSV-like text, so that <see cref="FeatureSchema.Fit(FeatureSpec, IReadOnlyList{string}, IEnumerable{IReadOnlyList{string}})"/>
    /// refits a schema on them with the same reading the decoder applies: numbers by their shortest round-trip text
    /// (as the decoder looks categorical numbers up), booleans as "true"/"false" for categorical and "1"/"0" otherwise,
    /// strings as they are, absent and null as missing.
    /// </summary>
    public static IEnumerable<string[]> Cells(FeatureSpec spec, IEnumerable<byte[]> events)
    {
        foreach (var payload in events)
        {
            using var document = JsonDocument.Parse(payload);
            var cells = new string[spec.Features.Count];
            for (int f = 0; f < cells.Length; f++)
            {
                var feature = spec.Features[f];
                cells[f] = !document.RootElement.TryGetProperty(feature.Name, out var value) ? "" : value.ValueKind switch
                {
                    JsonValueKind.String => value.GetString() ?? "",
                    JsonValueKind.Number => value.GetDouble().ToString("R", CultureInfo.InvariantCulture),
                    JsonValueKind.True => feature.Kind == FeatureKind.Categorical ? "true" : "1",
                    JsonValueKind.False => feature.Kind == FeatureKind.Categorical ? "false" : "0",
                    _ => "",
                };
            }
            yield return cells;
        }
    }

    /// <summary>The spec a schema was fitted from: same features, kinds and log transforms.</summary>
    public static FeatureSpec SpecOf(FeatureSchema schema) =>
        new(schema.Features.Select(f => new FeatureDefinition(f.Name, f.Kind, f.Log)));

    /// <summary>Scores of a table through ONNX Runtime, as serve scores (the model's own file).</summary>
    public static float[] Score(ModelBundle bundle, FeatureTable table, CancellationToken cancellationToken) =>
        table.RowCount == 0 ? [] : bundle.Score(table, cancellationToken: cancellationToken).Scores;
}
