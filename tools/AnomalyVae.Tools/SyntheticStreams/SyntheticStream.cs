using System.Buffers;
using System.Text.Json;
using AnomalyVae.Events;
using AnomalyVae.Model;

namespace AnomalyVae.Tools;

/// <summary>
/// A deterministic stream of synthetic events with injected, labelled anomalies: <see cref="Next"/> moves on, then the
/// properties, <see cref="EventJson"/> or <see cref="WriteCsvRecord"/> give the event. Label and anomaly kind are only
/// in the CSV (its last two columns), never in the JSON a scorer sees. Same seed and settings, same bytes (on one
/// runtime and platform). Not thread-safe; nothing is allocated per event.
/// </summary>
public abstract class SyntheticStream
{
    /// <summary>Name of the event id column (first in CSV and JSON).</summary>
    public const string EventIdColumn = "event_id";

    /// <summary>Name of the timestamp column (ISO-8601 UTC with milliseconds, e.g. 2024-01-01T00:00:00.000Z).</summary>
    public const string TimestampColumn = "ts";

    /// <summary>CSV column with 1 for an injected anomaly, 0 otherwise.</summary>
    public const string LabelColumn = "label";

    /// <summary>CSV column with the anomaly kind ("" for a normal event).</summary>
    public const string AnomalyKindColumn = "anomaly_kind";

    /// <summary>Highest accepted anomaly rate: beyond it "anomalies" would no longer be rare.</summary>
    public const double MaxAnomalyRate = 0.5;

    /// <summary>Upper bound on entities (machines, accounts): per-entity state lives in memory.</summary>
    public const int MaxEntities = 10_000_000;

    /// <summary>Where every stream's clock starts unless told otherwise, so output does not depend on the wall clock.</summary>
    public static readonly DateTime DefaultStart = new(2024, 1, 1, 0, 0, 0, DateTimeKind.Utc);

    /// <summary>Marks a text column in the column list subclasses pass in (numeric columns give their decimals).</summary>
    private protected const int TextColumn = -1;

    private const int TimestampLength = 24; // yyyy-MM-ddTHH:mm:ss.fffZ

    private readonly string[] _featureColumns;
    private readonly bool[] _isText;
    private readonly int[] _decimals;
    private readonly JsonEncodedText[] _jsonNames;
    private readonly JsonEncodedText _jsonEntityName;
    private readonly string[] _entityIds;
    private readonly char[] _eventId = new char[48];
    private readonly int _eventIdPrefixLength;
    private readonly char[] _timestamp = new char[TimestampLength];
    private readonly double[] _numbers;
    private readonly string[] _texts;
    private readonly char[] _numberChars = new char[40];
    private readonly byte[] _numberBytes = new byte[40];
    private readonly ArrayBufferWriter<byte> _jsonBuffer = new(512);
    private readonly Utf8JsonWriter _json;
    private int _eventIdLength;
    private string _anomalyKind = "";

    private protected SyntheticStream(
        string domain, char eventIdPrefix, string entityColumn, char entityPrefix, int entityCount,
        IReadOnlyList<(string Name, int Decimals)> featureColumns, IReadOnlyList<string> anomalyKinds,
        long seed, double anomalyRate, DateTime? start)
    {
        if (!(anomalyRate >= 0 && anomalyRate <= MaxAnomalyRate))
            throw new ArgumentOutOfRangeException(nameof(anomalyRate), anomalyRate, $"the anomaly rate must be within [0, {MaxAnomalyRate}]");
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(entityCount);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(entityCount, MaxEntities);
        var startUtc = start ?? DefaultStart;
        if (startUtc.Kind != DateTimeKind.Utc)
            throw new ArgumentException("the start time must be UTC (DateTimeKind.Utc)", nameof(start));

        Domain = domain;
        Seed = seed;
        AnomalyRate = anomalyRate;
        EntityColumn = entityColumn;
        StartUnixMs = (startUtc - DateTime.UnixEpoch).Ticks / TimeSpan.TicksPerMillisecond;
        AnomalyKinds = anomalyKinds;
        Random = new SeededRandom(seed);

        _featureColumns = [.. featureColumns.Select(c => c.Name)];
        _isText = [.. featureColumns.Select(c => c.Decimals == TextColumn)];
        _decimals = [.. featureColumns.Select(c => c.Decimals)];
        _jsonNames = [.. _featureColumns.Select(n => JsonEncodedText.Encode(n))];
        _jsonEntityName = JsonEncodedText.Encode(entityColumn);
        _numbers = new double[_featureColumns.Length];
        _texts = new string[_featureColumns.Length];
        Array.Fill(_texts, "");
        CsvHeader = [EventIdColumn, entityColumn, TimestampColumn, .. _featureColumns, LabelColumn, AnomalyKindColumn];

        // Zero-padded ids (m007, a00042) sort and read well; the width grows with the count.
        var width = Math.Max(3, (entityCount - 1).ToString(System.Globalization.CultureInfo.InvariantCulture).Length);
        _entityIds = new string[entityCount];
        for (var i = 0; i < entityCount; i++)
            _entityIds[i] = entityPrefix + i.ToString(new string('0', width), System.Globalization.CultureInfo.InvariantCulture);

        // Event ids carry the seed, so streams with different seeds never share an id.
        var prefix = $"{eventIdPrefix}{seed.ToString(System.Globalization.CultureInfo.InvariantCulture)}-";
        prefix.CopyTo(_eventId);
        _eventIdPrefixLength = prefix.Length;

        // Validation off: the writer is driven by this class only, always with well-formed calls.
        _json = new Utf8JsonWriter(_jsonBuffer, new JsonWriterOptions { SkipValidation = true });
    }

    /// <summary>"sensors" or "transactions".</summary>
    public string Domain { get; }

    public long Seed { get; }

    /// <summary>Expected fraction of events that are anomalous (some kinds span several consecutive events of an entity).</summary>
    public double AnomalyRate { get; }

    /// <summary>Name of the entity id column ("machine_id", "account_id"); it is also the Kafka key.</summary>
    public string EntityColumn { get; }

    /// <summary>Number of entities; entity ids are the prefix plus a zero-padded index.</summary>
    public int EntityCount => _entityIds.Length;

    /// <summary>Feature columns in payload order (without event id, entity id, timestamp and labels).</summary>
    public IReadOnlyList<string> FeatureColumns => _featureColumns;

    /// <summary>event_id, entity id, ts, the feature columns, label, anomaly_kind.</summary>
    public IReadOnlyList<string> CsvHeader { get; }

    /// <summary>The kinds this generator injects, as they appear in <see cref="AnomalyKind"/>.</summary>
    public IReadOnlyList<string> AnomalyKinds { get; }

    /// <summary>Events generated so far (the current event is number <see cref="Generated"/>, counting from 1).</summary>
    public long Generated { get; private set; }

    /// <summary>Index of the current event's entity, in [0, <see cref="EntityCount"/>).</summary>
    public int EntityIndex { get; private protected set; }

    /// <summary>The current event's entity id, e.g. "m017".</summary>
    public string EntityId => _entityIds[EntityIndex];

    /// <summary>The current event's id, unique within the stream ("s42-17": domain letter, seed, sequence).</summary>
    public ReadOnlySpan<char> EventId => _eventId.AsSpan(0, _eventIdLength);

    /// <summary>The current event's time, ISO-8601 UTC with milliseconds.</summary>
    public ReadOnlySpan<char> Timestamp => _timestamp;

    /// <summary>The current event's time in milliseconds since the Unix epoch.</summary>
    public long TimestampUnixMs { get; private set; }

    /// <summary>1 when the current event is an injected anomaly, else 0.</summary>
    public int Label => _anomalyKind.Length == 0 ? 0 : 1;

    /// <summary>The current event's anomaly kind (one of <see cref="AnomalyKinds"/>), "" when normal.</summary>
    public string AnomalyKind
    {
        get => _anomalyKind;
        private protected set => _anomalyKind = value;
    }

    /// <summary>Whether feature column <paramref name="column"/> holds text (a category) rather than a number.</summary>
    public bool IsText(int column) => _isText[column];

    /// <summary>A numeric feature of the current event, by index into <see cref="FeatureColumns"/>.</summary>
    public double Number(int column) =>
        _isText[column] ? throw new ArgumentException($"column '{_featureColumns[column]}' is text", nameof(column)) : _numbers[column];

    /// <summary>A text feature of the current event, by index into <see cref="FeatureColumns"/>.</summary>
    public string Text(int column) =>
        _isText[column] ? _texts[column] : throw new ArgumentException($"column '{_featureColumns[column]}' is numeric", nameof(column));

    private protected SeededRandom Random { get; }

    private protected long StartUnixMs { get; }

    /// <summary>Moves to the next event.</summary>
    public void Next()
    {
        Generated++;
        _anomalyKind = "";
        Advance();
        Generated.TryFormat(_eventId.AsSpan(_eventIdPrefixLength), out var digits, default, System.Globalization.CultureInfo.InvariantCulture);
        _eventIdLength = _eventIdPrefixLength + digits;
    }

    /// <summary>
    /// The current event as a UTF-8 JSON object: event_id, the entity id, ts, then the feature columns. The span
    /// points into a buffer that the next call overwrites.
    /// </summary>
    public ReadOnlySpan<byte> EventJson()
    {
        _jsonBuffer.ResetWrittenCount();
        _json.Reset(_jsonBuffer);
        WriteJson(_json);
        _json.Flush();
        return _jsonBuffer.WrittenSpan;
    }

    /// <summary>Writes the current event as one JSON object (see <see cref="EventJson"/>).</summary>
    public void WriteJson(Utf8JsonWriter writer)
    {
        ArgumentNullException.ThrowIfNull(writer);
        writer.WriteStartObject();
        writer.WriteString(s_jsonEventId, EventId);
        writer.WriteString(_jsonEntityName, EntityId);
        writer.WriteString(s_jsonTimestamp, Timestamp);
        for (var c = 0; c < _featureColumns.Length; c++)
        {
            if (_isText[c])
            {
                writer.WriteString(_jsonNames[c], _texts[c]);
            }
            else
            {
                // Fixed-point formatting is several times faster than the writer's shortest round-trip search
                // and gives the same text for values already rounded to the column's decimals.
                writer.WritePropertyName(_jsonNames[c]);
                var length = FormatNumber(_numbers[c], _decimals[c], _numberChars);
                for (var i = 0; i < length; i++)
                    _numberBytes[i] = (byte)_numberChars[i];
                writer.WriteRawValue(_numberBytes.AsSpan(0, length), skipInputValidation: true);
            }
        }

        writer.WriteEndObject();
    }

    /// <summary>Writes <see cref="CsvHeader"/> as a record.</summary>
    public void WriteCsvHeader(CsvWriter writer)
    {
        ArgumentNullException.ThrowIfNull(writer);
        writer.WriteRecord(CsvHeader);
    }

    /// <summary>Writes the current event as a CSV record in <see cref="CsvHeader"/> order.</summary>
    public void WriteCsvRecord(CsvWriter writer)
    {
        ArgumentNullException.ThrowIfNull(writer);
        writer.WriteField(EventId);
        writer.WriteField(EntityId);
        writer.WriteField(Timestamp);
        for (var c = 0; c < _featureColumns.Length; c++)
        {
            if (_isText[c])
                writer.WriteField(_texts[c]);
            else
                writer.WriteField(_numberChars.AsSpan(0, FormatNumber(_numbers[c], _decimals[c], _numberChars)));
        }

        writer.WriteField(Label);
        writer.WriteField(_anomalyKind);
        writer.EndRecord();
    }

    /// <summary>Header of a labels side file: event_id, label, anomaly_kind.</summary>
    public static IReadOnlyList<string> LabelsHeader { get; } = [EventIdColumn, LabelColumn, AnomalyKindColumn];

    /// <summary>Writes the current event's id, label and anomaly kind (a <see cref="LabelsHeader"/> record).</summary>
    public void WriteLabelRecord(CsvWriter writer)
    {
        ArgumentNullException.ThrowIfNull(writer);
        writer.WriteField(EventId);
        writer.WriteField(Label);
        writer.WriteField(_anomalyKind);
        writer.EndRecord();
    }

    /// <summary>Generates the next event: sets the entity, the time (<see cref="SetTimestamp"/>), the features and the anomaly kind.</summary>
    private protected abstract void Advance();

    /// <summary>Sets a numeric feature, rounded to the column's decimals (so JSON, CSV and <see cref="Number"/> agree).</summary>
    private protected void SetNumber(int column, double value) => _numbers[column] = Round(value, _decimals[column]);

    private protected void SetText(int column, string value) => _texts[column] = value;

    private protected void SetTimestamp(long unixMs)
    {
        TimestampUnixMs = unixMs;
        FormatTimestamp(unixMs, _timestamp);
    }

    /// <summary>
    /// Probability that an event outside any anomaly starts one, so that the long-run anomalous fraction is
    /// <paramref name="rate"/> when anomalies last <paramref name="meanLength"/> events on average: in the steady
    /// state f = (1 - f) · p · L, hence p = f / ((1 - f) · L).
    /// </summary>
    private protected static double StartProbability(double rate, double meanLength) =>
        rate <= 0 ? 0 : rate / ((1 - rate) * meanLength);

    /// <summary>Rounds to <paramref name="decimals"/> places; adding 0.0 turns -0 into 0, so it never prints as "-0".</summary>
    private protected static double Round(double value, int decimals) => Math.Round(value, decimals) + 0.0;

    /// <summary>Hour of day (0-23) of a Unix time in milliseconds, shifted by <paramref name="offsetHours"/>.</summary>
    private protected static int HourOfDay(long unixMs, int offsetHours = 0) =>
        (int)((((unixMs / 3_600_000) + offsetHours) % 24 + 24) % 24);

    /// <summary>Fraction of the UTC day elapsed, in [0, 1).</summary>
    private protected static double DayFraction(long unixMs) =>
        (((unixMs % 86_400_000) + 86_400_000) % 86_400_000) / 86_400_000.0;

    private static readonly JsonEncodedText s_jsonEventId = JsonEncodedText.Encode(EventIdColumn);
    private static readonly JsonEncodedText s_jsonTimestamp = JsonEncodedText.Encode(TimestampColumn);

    /// <summary>
    /// Writes a value rounded to <paramref name="decimals"/> places without trailing zeros ("43.3", "2874", "-0.05"),
    /// which is the shortest round-trip form of that double as long as it has at most 15 significant digits;
    /// anything larger or non-finite goes through the general "R" format.
    /// </summary>
    private static int FormatNumber(double value, int decimals, Span<char> output)
    {
        var scale = s_powersOfTen[decimals];
        var scaled = Math.Round(value * scale);
        if (!(Math.Abs(scaled) < 1e15))
        {
            value.TryFormat(output, out var written, "R", System.Globalization.CultureInfo.InvariantCulture);
            return written;
        }

        var units = (long)scaled;
        var length = 0;
        if (units < 0)
        {
            output[length++] = '-';
            units = -units;
        }

        var whole = units / (long)scale;
        var fraction = units % (long)scale;
        whole.TryFormat(output[length..], out var digits, default, System.Globalization.CultureInfo.InvariantCulture);
        length += digits;
        if (fraction != 0)
        {
            output[length++] = '.';
            for (var d = decimals - 1; d >= 0 && fraction != 0; d--)
            {
                var power = (long)s_powersOfTen[d];
                output[length++] = (char)('0' + (fraction / power));
                fraction %= power;
            }
        }

        return length;
    }

    private static readonly double[] s_powersOfTen = [1, 10, 100, 1000, 10_000, 100_000, 1_000_000];

    /// <summary>yyyy-MM-ddTHH:mm:ss.fffZ by hand: no culture, no allocation.</summary>
    private static void FormatTimestamp(long unixMs, Span<char> output)
    {
        var time = DateTime.UnixEpoch.AddTicks(unixMs * TimeSpan.TicksPerMillisecond);
        Digits(output[..4], time.Year);
        output[4] = '-';
        Digits(output.Slice(5, 2), time.Month);
        output[7] = '-';
        Digits(output.Slice(8, 2), time.Day);
        output[10] = 'T';
        Digits(output.Slice(11, 2), time.Hour);
        output[13] = ':';
        Digits(output.Slice(14, 2), time.Minute);
        output[16] = ':';
        Digits(output.Slice(17, 2), time.Second);
        output[19] = '.';
        Digits(output.Slice(20, 3), time.Millisecond);
        output[23] = 'Z';
    }

    private static void Digits(Span<char> output, int value)
    {
        for (var i = output.Length - 1; i >= 0; i--)
        {
            output[i] = (char)('0' + (value % 10));
            value /= 10;
        }
    }
}
