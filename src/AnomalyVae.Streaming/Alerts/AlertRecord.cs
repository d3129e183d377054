using System.Buffers;
using System.Globalization;
using System.Text.Json;
using AnomalyVae.Storage;

namespace AnomalyVae.Streaming;

/// <summary>
/// The alert records of a detector's alerts topic (schemas/alert.schema.json): one per incident opened or closed, and
/// optionally one per anomaly. Their <c>dedup_key</c> is "&lt;detector&gt;:&lt;topic&gt;:&lt;partition&gt;:&lt;offset&gt;:&lt;kind&gt;" over the
/// Kafka coordinates of the incident's first event (or of the anomaly's event): a batch replayed after a crash
/// produces the same keys, while row ids would differ. Detector and topic names cannot hold ':', so the key is
/// unambiguous; the entity is not in it because the event determines it.
/// </summary>
public static class AlertRecord
{
    public const string Opened = "incident_opened";
    public const string Closed = "incident_closed";
    public const string Anomaly = "anomaly";

    public static string Kind(IncidentTransitionKind kind) => kind == IncidentTransitionKind.Opened ? Opened : Closed;

    public static string DedupKey(string detector, string topic, int partition, long offset, string kind) =>
        string.Create(CultureInfo.InvariantCulture, $"{detector}:{topic}:{partition}:{offset}:{kind}");

    /// <summary>The record of an incident transition.</summary>
    public static byte[] ForIncident(IncidentTransition t, string severity, DateTime publishedAt)
    {
        var buffer = new ArrayBufferWriter<byte>(512);
        using (var json = new Utf8JsonWriter(buffer))
        {
            string kind = Kind(t.Kind);
            json.WriteStartObject();
            json.WriteString("dedup_key", DedupKey(t.Detector, t.FirstTopic, t.FirstPartition, t.FirstOffset, kind));
            json.WriteString("kind", kind);
            json.WriteString("detector", t.Detector);
            json.WriteString("entity", t.Entity);
            json.WriteString("severity", severity);
            WriteSource(json, t.FirstTopic, t.FirstPartition, t.FirstOffset);
            json.WriteString("first_at", Time(t.FirstAt));
            json.WriteString("last_at", Time(t.LastAt));
            if (t.ClosedAt is { } closed)
                json.WriteString("closed_at", Time(closed));
            else
                json.WriteNull("closed_at");
            json.WriteNumber("anomaly_count", t.AnomalyCount);
            json.WriteNumber("peak_score", t.PeakScore);
            json.WriteNumber("min_p_value", t.MinPValue);
            json.WriteStartArray("top_features");
            foreach (var (feature, score) in t.TopFeatures)
            {
                json.WriteStartObject();
                json.WriteString("feature", feature);
                json.WriteNumber("score", score);
                json.WriteEndObject();
            }
            json.WriteEndArray();
            json.WriteString("published_at", Time(publishedAt));
            json.WriteEndObject();
        }
        return buffer.WrittenSpan.ToArray();
    }

    /// <summary>The record of row <paramref name="i"/> of <paramref name="record"/> (an anomaly).</summary>
    public static byte[] ForAnomaly(BatchRecord record, int i, string severity, DateTime publishedAt)
    {
        var buffer = new ArrayBufferWriter<byte>(512);
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteString("dedup_key", DedupKey(record.Detector, record.Topic, record.Partitions[i], record.Offsets[i], Anomaly));
            json.WriteString("kind", Anomaly);
            json.WriteString("detector", record.Detector);
            if (record.Entities[i] is { } entity)
                json.WriteString("entity", entity);
            else
                json.WriteNull("entity");
            json.WriteString("severity", severity);
            WriteSource(json, record.Topic, record.Partitions[i], record.Offsets[i]);
            if (record.EventTimes[i] is { } time)
                json.WriteString("event_time", Time(time));
            else
                json.WriteNull("event_time");
            json.WriteNumber("score", record.Scores[i]);
            json.WriteNumber("p_value", record.PValues[i]);
            json.WritePropertyName("top_features");
            // The stored contributions, largest first: the first few.
            using (var contributions = JsonDocument.Parse(record.Contributions[i]))
            {
                json.WriteStartArray();
                foreach (var item in contributions.RootElement.EnumerateArray().Take(IncidentTransition.FeatureCount))
                {
                    if (item.TryGetProperty("score", out var s) && s.ValueKind == JsonValueKind.Number)
                        item.WriteTo(json);
                }
                json.WriteEndArray();
            }
            json.WriteString("published_at", Time(publishedAt));
            json.WriteEndObject();
        }
        return buffer.WrittenSpan.ToArray();
    }

    private static void WriteSource(Utf8JsonWriter json, string topic, int partition, long offset)
    {
        json.WriteStartObject("source");
        json.WriteString("topic", topic);
        json.WriteNumber("partition", partition);
        json.WriteNumber("offset", offset);
        json.WriteEndObject();
    }

    internal static string Time(DateTime time) =>
        DateTime.SpecifyKind(time.ToUniversalTime(), DateTimeKind.Utc).ToString("yyyy-MM-ddTHH:mm:ss.fffffffZ", CultureInfo.InvariantCulture);
}
