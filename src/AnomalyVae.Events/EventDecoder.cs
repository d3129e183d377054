using System.Buffers;
using System.Globalization;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json;
using System.Text.Unicode;
using AnomalyVae.Model;

namespace AnomalyVae.Events;

/// <summary>
/// Decodes one UTF-8 JSON event straight into a raw-input row (x, mask) of a <see cref="FeatureSchema"/>, plus the
/// optional entity and event-time fields, allocation-free on success. Never throws on a payload: a bad one gives an
/// <see cref="EventDecodeError"/> and an all-zero row; only caller mistakes (a row of the wrong length) throw.
/// Immutable and thread-safe. What it accepts and how each error is chosen: docs/streaming.md#event-format.
/// </summary>
// Scratch buffers are stack-allocated per call; only what CopyString wrote is ever read and the seen-bits are
// cleared explicitly, so zero-filling them on every event would be wasted work.
[SkipLocalsInit]
public sealed class EventDecoder
{
    /// <summary>Default largest payload: 1 MiB, Kafka's default maximum message size.</summary>
    public const int DefaultMaxPayloadBytes = 1 << 20;

    /// <summary>Default deepest nesting of objects/arrays (the top-level object is depth 1); System.Text.Json's default.</summary>
    public const int DefaultMaxDepth = 64;

    /// <summary>Largest accepted |x| of a numeric feature: 1e15 covers counts, bytes, money and timestamps in
    /// microseconds; larger values are almost always sentinels or corrupt data, and beyond ~1e38 a float cannot
    /// hold them at all.</summary>
    public const double MaxAbsNumericValue = 1e15;

    /// <summary>Largest entity as written in the payload (bytes between the quotes): an identifier, not a document.
    /// It also keeps the entity far below PostgreSQL's B-tree index row limit (~2.7 kB).</summary>
    public const int MaxEntityBytes = 512;

    private const int StackChars = 256;
    private const int StackNameChars = 512;
    private const int StackSeenWords = 64;
    private const long MinEpochMilliseconds = -62_135_596_800_000; // 0001-01-01T00:00:00Z
    private const long MaxEpochMilliseconds = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z
    private const int ExcerptBytes = 40;

    private readonly FeatureSchema _schema;
    private readonly int _nameCapacity;
    private readonly int _seenWords;
    // Known names (features, entity, time field) as UTF-8 in an open-addressing table: a property name without
    // escapes is matched on its payload bytes, with no transcoding to UTF-16 and no string hashing (which was a
    // fifth of the decoding time). Escaped names take the UTF-16 path; both give the same answer.
    private readonly KnownName[] _known;
    private readonly int _knownMask;

    /// <summary>Creates a decoder for events of <paramref name="schema"/>'s model.</summary>
    /// <param name="schema">The model's features (F, order, vocabularies, binary tokens).</param>
    /// <param name="entityField">Field holding the entity (e.g. "machine_id"), or null.</param>
    /// <param name="timeField">Field holding the event time, or null.</param>
    /// <param name="maxPayloadBytes">Larger payloads are <see cref="EventDecodeError.Oversized"/> without being parsed.</param>
    /// <param name="maxDepth">Deepest nesting of objects/arrays (top-level object = 1), 1 to 1000.</param>
    public EventDecoder(FeatureSchema schema, string? entityField = null, string? timeField = null,
        int maxPayloadBytes = DefaultMaxPayloadBytes, int maxDepth = DefaultMaxDepth)
    {
        ArgumentNullException.ThrowIfNull(schema);
        if (entityField is not null && string.IsNullOrWhiteSpace(entityField))
            throw new ArgumentException("the entity field name must not be empty (pass null for none)", nameof(entityField));
        if (timeField is not null && string.IsNullOrWhiteSpace(timeField))
            throw new ArgumentException("the event-time field name must not be empty (pass null for none)", nameof(timeField));
        if (entityField is not null && entityField == timeField)
            throw new ArgumentException($"'{entityField}' cannot be both the entity and the event-time field", nameof(timeField));
        ArgumentOutOfRangeException.ThrowIfLessThan(maxPayloadBytes, 2);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxDepth, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(maxDepth, 1000);

        _schema = schema;
        EntityField = entityField;
        TimeField = timeField;
        MaxPayloadBytes = maxPayloadBytes;
        MaxDepth = maxDepth;

        // A property name needs at least one payload byte per char and at most 6 (\uXXXX), so a name longer than
        // 6 × the longest known name in bytes cannot match, and one that can fits in that many chars.
        var longest = Math.Max(entityField?.Length ?? 0, timeField?.Length ?? 0);
        foreach (var feature in schema.Features)
            longest = Math.Max(longest, feature.Name.Length);
        _nameCapacity = 6 * longest;
        _seenWords = (schema.Count + 2 + 63) / 64;
        (_known, _knownMask) = KnownNames(schema, entityField, timeField);
    }

    private readonly record struct KnownName(byte[]? Utf8, int Feature, bool IsEntity, bool IsTime);

    private static (KnownName[] Table, int Mask) KnownNames(FeatureSchema schema, string? entityField, string? timeField)
    {
        var roles = new Dictionary<string, KnownName>(StringComparer.Ordinal);
        for (int i = 0; i < schema.Count; i++)
            roles[schema.Features[i].Name] = new KnownName(null, i, false, false);
        if (entityField is not null)
            roles[entityField] = roles.GetValueOrDefault(entityField, new KnownName(null, -1, false, false)) with { IsEntity = true };
        if (timeField is not null)
            roles[timeField] = roles.GetValueOrDefault(timeField, new KnownName(null, -1, false, false)) with { IsTime = true };
        int size = (int)BitOperations.RoundUpToPowerOf2((uint)Math.Max(8, 2 * roles.Count));
        var table = new KnownName[size];
        var strict = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);
        foreach (var (name, role) in roles)
        {
            byte[] utf8;
            try
            {
                utf8 = strict.GetBytes(name);
            }
            catch (EncoderFallbackException)
            {
                // A lone surrogate: no valid UTF-8 payload spells it, so no unescaped name can match it.
                continue;
            }
            int slot = (int)Hash(utf8) & (size - 1);
            while (table[slot].Utf8 is not null)
                slot = (slot + 1) & (size - 1);
            table[slot] = role with { Utf8 = utf8 };
        }
        return (table, size - 1);
    }

    private static uint Hash(ReadOnlySpan<byte> name)
    {
        // FNV-1a: names are short, and the table is built from the model's own names (nothing to attack).
        uint hash = 2166136261;
        foreach (byte b in name)
            hash = (hash ^ b) * 16777619;
        return hash;
    }

    private void ResolveUtf8(ReadOnlySpan<byte> name, out int feature, out bool isEntity, out bool isTime)
    {
        int slot = (int)Hash(name) & _knownMask;
        while (true)
        {
            ref readonly var known = ref _known[slot];
            if (known.Utf8 is null)
            {
                feature = -1;
                isEntity = false;
                isTime = false;
                return;
            }
            if (name.SequenceEqual(known.Utf8))
            {
                feature = known.Feature;
                isEntity = known.IsEntity;
                isTime = known.IsTime;
                return;
            }
            slot = (slot + 1) & _knownMask;
        }
    }

    /// <summary>The model's features.</summary>
    public FeatureSchema Schema => _schema;

    /// <summary>F, the length of a row.</summary>
    public int FeatureCount => _schema.Count;

    /// <summary>Field holding the entity, or null.</summary>
    public string? EntityField { get; }

    /// <summary>Field holding the event time, or null.</summary>
    public string? TimeField { get; }

    /// <summary>Larger payloads are rejected before parsing.</summary>
    public int MaxPayloadBytes { get; }

    /// <summary>Deepest accepted nesting (top-level object = 1).</summary>
    public int MaxDepth { get; }

    /// <summary>
    /// Decodes <paramref name="payload"/> into the row <paramref name="x"/>/<paramref name="mask"/> (length F each,
    /// overwritten; all zeros on failure).
    /// </summary>
    /// <exception cref="ArgumentException">x or mask is not of length F (a caller bug, not bad input).</exception>
    public EventDecodeResult Decode(ReadOnlySpan<byte> payload, Span<float> x, Span<float> mask)
    {
        var count = _schema.Count;
        if (x.Length != count || mask.Length != count)
            throw new ArgumentException($"x and mask must both have length F = {count}, not {x.Length} and {mask.Length}");
        x.Clear();
        mask.Clear();

        EventDecodeResult result;
        if (payload.Length > MaxPayloadBytes)
            result = Failure(EventDecodeError.Oversized, $"the payload is {payload.Length} bytes, more than the maximum {MaxPayloadBytes}", -1, -1);
        else if (!Utf8.IsValid(payload))
        {
            var at = InvalidUtf8Offset(payload);
            result = Failure(EventDecodeError.MalformedJson, $"the payload is not valid UTF-8 (byte {at})", -1, at);
        }
        else
            result = DecodeValidUtf8(payload, x, mask);

        if (!result.IsSuccess)
        {
            x.Clear();
            mask.Clear();
        }

        return result;
    }

    /// <summary>
    /// Decodes <paramref name="payload"/> into the next row of <paramref name="batch"/>; on success the row is
    /// appended (<see cref="EventBatch.Count"/> grows by one), on failure the batch is unchanged.
    /// </summary>
    /// <exception cref="ArgumentException">The batch is for a different F.</exception>
    /// <exception cref="InvalidOperationException">The batch is full.</exception>
    public EventDecodeResult Decode(ReadOnlySpan<byte> payload, EventBatch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        if (batch.FeatureCount != _schema.Count)
            throw new ArgumentException($"the batch has {batch.FeatureCount} features per row but the schema has {_schema.Count}", nameof(batch));
        var result = Decode(payload, batch.NextRowX(), batch.NextRowMask());
        if (result.IsSuccess)
            batch.CommitRow();
        return result;
    }

    private EventDecodeResult DecodeValidUtf8(ReadOnlySpan<byte> payload, Span<float> x, Span<float> mask)
    {
        // RFC 8259 lets parsers ignore a byte-order mark; Utf8JsonReader does not, so skip it here.
        var start = payload.StartsWith((ReadOnlySpan<byte>)[0xEF, 0xBB, 0xBF]) ? 3 : 0;

        ulong[]? rentedSeen = null;
        char[]? rentedNames = null;
        var seen = _seenWords <= StackSeenWords
            ? stackalloc ulong[StackSeenWords]
            : (rentedSeen = ArrayPool<ulong>.Shared.Rent(_seenWords));
        seen = seen[.._seenWords];
        seen.Clear();
        var names = _nameCapacity <= StackNameChars
            ? stackalloc char[StackNameChars]
            : (rentedNames = ArrayPool<char>.Shared.Rent(_nameCapacity));
        names = names[.._nameCapacity];
        try
        {
            var reader = new Utf8JsonReader(payload[start..], new JsonReaderOptions { MaxDepth = MaxDepth + 1 });
            return ReadEvent(ref reader, start, x, mask, seen, names);
        }
        catch (JsonException e)
        {
            // Syntax errors, truncation, trailing content: the reader's message says what and where.
            var at = e.LineNumber == 0 && e.BytePositionInLine is { } column ? column + start : -1;
            return Failure(EventDecodeError.MalformedJson, $"malformed JSON: {e.Message}", -1, at);
        }
        finally
        {
            if (rentedSeen is not null)
                ArrayPool<ulong>.Shared.Return(rentedSeen);
            if (rentedNames is not null)
                ArrayPool<char>.Shared.Return(rentedNames);
        }
    }

    private EventDecodeResult ReadEvent(ref Utf8JsonReader reader, int start, scoped Span<float> x, scoped Span<float> mask,
        scoped Span<ulong> seen, scoped Span<char> names)
    {
        if (!reader.Read())
            return Failure(EventDecodeError.MalformedJson, "the payload holds no JSON value", -1, -1);
        if (reader.TokenType != JsonTokenType.StartObject)
        {
            // Read it all first so that "[1, 2" is reported as malformed rather than as not an object.
            var token = reader.TokenType;
            var structural = SkipValue(ref reader, start);
            if (!structural.IsSuccess)
                return structural;
            if (reader.Read())
                return Failure(EventDecodeError.MalformedJson, "content after the JSON value", -1, reader.TokenStartIndex + start);
            return Failure(EventDecodeError.NotAnObject, $"an event must be a JSON object, not {Describe(token)}", -1, start);
        }

        var count = _schema.Count;
        var pending = default(EventDecodeResult);
        var present = 0;
        var entity = default(EventEntity);
        DateTimeOffset? time = null;
        while (true)
        {
            if (!reader.Read())
                return Failure(EventDecodeError.MalformedJson, "the payload ends inside the event object", -1, -1);
            if (reader.TokenType == JsonTokenType.EndObject)
                break;

            var nameStart = reader.TokenStartIndex + start;
            var feature = -1;
            var isEntity = false;
            var isTime = false;
            if (pending.IsSuccess)
            {
                var resolved = ResolveName(ref reader, names, nameStart, out feature, out isEntity, out isTime);
                if (!resolved.IsSuccess)
                    return resolved;
            }
            else if (reader.ValueIsEscaped && !IsValidEscapedString(ref reader))
                return InvalidEscape(nameStart);

            if (!reader.Read())
                return Failure(EventDecodeError.MalformedJson, "the payload ends after a property name", -1, -1);
            var valueStart = reader.TokenStartIndex + start;

            if (feature >= 0 || isEntity || isTime)
            {
                // Mark every role the name has, then report a repeat of any of them.
                var repeated = (feature >= 0 && !MarkSeen(seen, feature))
                    | (isEntity && !MarkSeen(seen, count))
                    | (isTime && !MarkSeen(seen, count + 1));
                if (repeated)
                {
                    var name = feature >= 0 ? _schema.Features[feature].Name : isEntity ? EntityField : TimeField;
                    pending = Failure(EventDecodeError.DuplicateKey,
                        $"field '{name}' appears more than once (byte {nameStart}); JSON parsers disagree on which copy wins", feature, nameStart);
                }
                else
                {
                    if (feature >= 0)
                    {
                        pending = ReadFeature(ref reader, feature, x, mask, valueStart);
                        if (IsStructural(pending))
                            return pending;
                        if (pending.IsSuccess && mask[feature] != 0)
                            present++;
                    }

                    if (isEntity && pending.IsSuccess)
                    {
                        pending = ReadEntity(ref reader, valueStart, out entity);
                        if (IsStructural(pending))
                            return pending;
                    }

                    if (isTime && pending.IsSuccess)
                    {
                        pending = ReadTime(ref reader, valueStart, out time);
                        if (IsStructural(pending))
                            return pending;
                    }
                }
            }

            // Containers still need skipping (with depth checks); a string's escapes are checked even if a value error came first.
            var skipped = SkipValue(ref reader, start);
            if (!skipped.IsSuccess)
                return skipped;
        }

        // Only white space may follow the object; anything else makes Read throw (reported as malformed).
        if (reader.Read())
            return Failure(EventDecodeError.MalformedJson, "content after the event object", -1, reader.TokenStartIndex + start);
        if (!pending.IsSuccess)
            return pending;
        return new EventDecodeResult(EventDecodeError.None, null, -1, -1, entity, time, present);
    }

    private EventDecodeResult ResolveName(ref Utf8JsonReader reader, scoped Span<char> names, long nameStart,
        out int feature, out bool isEntity, out bool isTime)
    {
        if (!reader.ValueIsEscaped)
        {
            ResolveUtf8(reader.ValueSpan, out feature, out isEntity, out isTime);
            return default;
        }

        feature = -1;
        isEntity = false;
        isTime = false;
        if (reader.ValueSpan.Length > names.Length)
        {
            // Too long to be any known name (see the constructor); only check it is valid.
            return reader.ValueIsEscaped && !IsValidEscapedString(ref reader) ? InvalidEscape(nameStart) : default;
        }

        if (!TryCopyString(ref reader, names, out var length))
            return InvalidEscape(nameStart);
        var name = names[..length];
        if (_schema.TryGetIndex(name, out var index))
            feature = index;
        isEntity = EntityField is not null && name.SequenceEqual(EntityField);
        isTime = TimeField is not null && name.SequenceEqual(TimeField);
        return default;
    }

    private EventDecodeResult ReadFeature(ref Utf8JsonReader reader, int feature, scoped Span<float> x, scoped Span<float> mask, long at)
    {
        var fitted = _schema.Features[feature];
        switch (reader.TokenType)
        {
            case JsonTokenType.Null:
                return default;
            case JsonTokenType.True or JsonTokenType.False:
                _schema.TryEncode(feature, reader.TokenType == JsonTokenType.True, out x[feature], out mask[feature]);
                return default;
            case JsonTokenType.Number:
                return ReadNumber(ref reader, feature, fitted, x, mask, at);
            case JsonTokenType.String:
                return ReadString(ref reader, feature, fitted, x, mask, at);
            default:
                return Failure(EventDecodeError.WrongType,
                    $"feature '{fitted.Name}' ({FeatureSpec.KindName(fitted.Kind)}) cannot be {Describe(reader.TokenType)} (byte {at}); expected {Expected(fitted)}",
                    feature, at);
        }
    }

    private EventDecodeResult ReadNumber(ref Utf8JsonReader reader, int feature, FittedFeature fitted, scoped Span<float> x, scoped Span<float> mask, long at)
    {
        // Valid JSON numbers always parse; those beyond double range come back as ±infinity.
        if (!reader.TryGetDouble(out var value))
            value = double.NaN;
        switch (fitted.Kind)
        {
            case FeatureKind.Numeric:
                return StoreNumeric(value, reader.ValueSpan, feature, fitted, x, mask, at);
            case FeatureKind.Categorical:
                if (double.IsFinite(value))
                    _schema.TryEncode(feature, value, out x[feature], out mask[feature]);
                else
                {
                    // Training vocabularies come from text; a number beyond double range matches none of it.
                    x[feature] = 0;
                    mask[feature] = 1;
                }

                return default;
            default:
                return _schema.TryEncode(feature, value, out x[feature], out mask[feature])
                    ? default
                    : Failure(EventDecodeError.WrongType,
                        $"binary feature '{fitted.Name}' takes 0 or 1, not {Excerpt(reader.ValueSpan)} (byte {at}); expected {Expected(fitted)}",
                        feature, at);
        }
    }

    private static EventDecodeResult StoreNumeric(double value, ReadOnlySpan<byte> written, int feature, FittedFeature fitted,
        Span<float> x, Span<float> mask, long at)
    {
        if (!double.IsFinite(value))
        {
            return Failure(EventDecodeError.NotFinite,
                $"numeric feature '{fitted.Name}' is not finite: {Excerpt(written)} (byte {at})", feature, at);
        }

        if (Math.Abs(value) > MaxAbsNumericValue)
        {
            return Failure(EventDecodeError.OutOfRange,
                $"numeric feature '{fitted.Name}' is {value.ToString("G6", CultureInfo.InvariantCulture)}, beyond ±{MaxAbsNumericValue.ToString("G3", CultureInfo.InvariantCulture)} (byte {at})",
                feature, at);
        }

        x[feature] = (float)value;
        mask[feature] = 1;
        return default;
    }

    private EventDecodeResult ReadString(ref Utf8JsonReader reader, int feature, FittedFeature fitted, scoped Span<float> x, scoped Span<float> mask, long at)
    {
        var raw = reader.ValueSpan;
        char[]? rented = null;
        // Unescaped text never has more chars than the payload has bytes for it.
        var buffer = raw.Length <= StackChars ? stackalloc char[StackChars] : (rented = ArrayPool<char>.Shared.Rent(raw.Length));
        try
        {
            if (!TryCopyString(ref reader, buffer, out var length))
                return InvalidEscape(at);
            var text = buffer[..length];
            if (fitted.Kind == FeatureKind.Numeric)
            {
                var trimmed = text.Trim();
                if (trimmed.Equals("NaN", StringComparison.OrdinalIgnoreCase))
                    return StoreNumeric(double.NaN, raw, feature, fitted, x, mask, at);
                if (CellText.IsMissing(trimmed))
                    return default;
                if (!CellText.TryParseNumber(trimmed, out var value))
                {
                    return Failure(EventDecodeError.WrongType,
                        $"numeric feature '{fitted.Name}': \"{Excerpt(raw)}\" is not a number (byte {at}); expected {Expected(fitted)}", feature, at);
                }

                return StoreNumeric(value, raw, feature, fitted, x, mask, at);
            }

            return _schema.TryEncode(feature, text, out x[feature], out mask[feature])
                ? default
                : Failure(EventDecodeError.WrongType,
                    $"binary feature '{fitted.Name}': \"{Excerpt(raw)}\" is not one of its tokens (byte {at}); expected {Expected(fitted)}",
                    feature, at);
        }
        finally
        {
            if (rented is not null)
                ArrayPool<char>.Shared.Return(rented);
        }
    }

    private EventDecodeResult ReadEntity(ref Utf8JsonReader reader, long at, out EventEntity entity)
    {
        entity = default;
        var raw = reader.ValueSpan;
        switch (reader.TokenType)
        {
            case JsonTokenType.Null:
                return default;
            case JsonTokenType.String or JsonTokenType.Number when raw.Length > MaxEntityBytes:
                return Failure(EventDecodeError.BadEntity,
                    $"entity field '{EntityField}' is {raw.Length} bytes long, more than {MaxEntityBytes} (byte {at})", -1, at);
            case JsonTokenType.String:
                if (reader.ValueIsEscaped && !IsValidEscapedString(ref reader))
                    return InvalidEscape(at);
                if (raw.Length > 0)
                    entity = new EventEntity(checked((int)at + 1), raw.Length, isString: true, reader.ValueIsEscaped);
                return default;
            case JsonTokenType.Number:
                entity = new EventEntity(checked((int)at), raw.Length, isString: false, isEscaped: false);
                return default;
            default:
                return Failure(EventDecodeError.BadEntity,
                    $"entity field '{EntityField}' must be a string or a number, not {Describe(reader.TokenType)} (byte {at})", -1, at);
        }
    }

    private EventDecodeResult ReadTime(ref Utf8JsonReader reader, long at, out DateTimeOffset? time)
    {
        time = null;
        switch (reader.TokenType)
        {
            case JsonTokenType.Null:
                return default;
            case JsonTokenType.String:
                if (reader.ValueIsEscaped && !IsValidEscapedString(ref reader))
                    return InvalidEscape(at);
                if (reader.ValueSpan.Length == 0)
                    return default;
                if (reader.TryGetDateTime(out var clock))
                {
                    switch (clock.Kind)
                    {
                        case DateTimeKind.Utc:
                            time = new DateTimeOffset(clock);
                            return default;
                        case DateTimeKind.Unspecified:
                            // No offset: take the clock time as UTC rather than the host's zone.
                            time = new DateTimeOffset(clock, TimeSpan.Zero);
                            return default;
                        default:
                            // An explicit offset (Kind Local): read it exactly, then normalize to UTC.
                            if (reader.TryGetDateTimeOffset(out var withOffset))
                            {
                                time = withOffset.ToUniversalTime();
                                return default;
                            }

                            break;
                    }
                }

                return Failure(EventDecodeError.BadEventTime,
                    $"event time field '{TimeField}': \"{Excerpt(reader.ValueSpan)}\" is not an ISO-8601 date-time such as 2024-05-01T12:00:00Z (byte {at})",
                    -1, at);
            case JsonTokenType.Number:
                long milliseconds;
                if (!reader.TryGetInt64(out milliseconds))
                {
                    // Fractional or exponent forms (1.7e12) are still milliseconds; sub-millisecond parts are dropped.
                    milliseconds = reader.TryGetDouble(out var value) && value >= MinEpochMilliseconds && value <= MaxEpochMilliseconds
                        ? (long)Math.Floor(value)
                        : long.MaxValue;
                }

                if (milliseconds is < MinEpochMilliseconds or > MaxEpochMilliseconds)
                {
                    return Failure(EventDecodeError.BadEventTime,
                        $"event time field '{TimeField}': {Excerpt(reader.ValueSpan)} is not a time in milliseconds since 1970-01-01 between years 1 and 9999 (byte {at})",
                        -1, at);
                }

                time = DateTimeOffset.FromUnixTimeMilliseconds(milliseconds);
                return default;
            default:
                return Failure(EventDecodeError.BadEventTime,
                    $"event time field '{TimeField}' must be an ISO-8601 string or epoch milliseconds, not {Describe(reader.TokenType)} (byte {at})",
                    -1, at);
        }
    }

    /// <summary>Skips the value the reader is on (nested or not), checking depth and escapes.</summary>
    private EventDecodeResult SkipValue(ref Utf8JsonReader reader, int start)
    {
        if (reader.TokenType is JsonTokenType.String)
            return reader.ValueIsEscaped && !IsValidEscapedString(ref reader) ? InvalidEscape(reader.TokenStartIndex + start) : default;
        if (reader.TokenType is not (JsonTokenType.StartObject or JsonTokenType.StartArray))
            return default;

        var depth = reader.CurrentDepth;
        if (depth + 1 > MaxDepth)
            return TooDeep(reader.TokenStartIndex + start);
        while (reader.Read())
        {
            switch (reader.TokenType)
            {
                case JsonTokenType.StartObject or JsonTokenType.StartArray:
                    // CurrentDepth is the depth of the container's own token, so it opens level CurrentDepth + 1.
                    if (reader.CurrentDepth + 1 > MaxDepth)
                        return TooDeep(reader.TokenStartIndex + start);
                    break;
                case JsonTokenType.String or JsonTokenType.PropertyName:
                    if (reader.ValueIsEscaped && !IsValidEscapedString(ref reader))
                        return InvalidEscape(reader.TokenStartIndex + start);
                    break;
                case JsonTokenType.EndObject or JsonTokenType.EndArray:
                    if (reader.CurrentDepth == depth)
                        return default;
                    break;
            }
        }

        return Failure(EventDecodeError.MalformedJson, "the payload ends inside an object or array", -1, -1);
    }

    private EventDecodeResult TooDeep(long at) =>
        Failure(EventDecodeError.TooDeep, $"objects/arrays are nested deeper than {MaxDepth} levels (byte {at})", -1, at);

    private static bool IsStructural(EventDecodeResult result) =>
        result.Error is EventDecodeError.MalformedJson or EventDecodeError.TooDeep;

    private static EventDecodeResult InvalidEscape(long at) =>
        Failure(EventDecodeError.MalformedJson, $"malformed JSON: a string has a \\u escape that is a lone surrogate (byte {at})", -1, at);

    private static EventDecodeResult Failure(EventDecodeError error, string message, int feature, long at) =>
        new(error, message, feature, at, default, null, 0);

    private static bool MarkSeen(Span<ulong> seen, int index)
    {
        ref var word = ref seen[index >> 6];
        var bit = 1UL << (index & 63);
        if ((word & bit) != 0)
            return false;
        word |= bit;
        return true;
    }

    private static bool TryCopyString(ref Utf8JsonReader reader, scoped Span<char> destination, out int length)
    {
        try
        {
            length = reader.CopyString(destination);
            return true;
        }
        catch (InvalidOperationException)
        {
            // The payload is valid UTF-8, so this is an escape that is a lone surrogate.
            length = 0;
            return false;
        }
    }

    private static bool IsValidEscapedString(ref Utf8JsonReader reader)
    {
        var length = reader.ValueSpan.Length;
        byte[]? rented = null;
        var buffer = length <= StackChars ? stackalloc byte[StackChars] : (rented = ArrayPool<byte>.Shared.Rent(length));
        try
        {
            reader.CopyString(buffer);
            return true;
        }
        catch (InvalidOperationException)
        {
            return false;
        }
        finally
        {
            if (rented is not null)
                ArrayPool<byte>.Shared.Return(rented);
        }
    }

    private static long InvalidUtf8Offset(ReadOnlySpan<byte> payload)
    {
        var at = 0;
        while (at < payload.Length)
        {
            if (Rune.DecodeFromUtf8(payload[at..], out _, out var consumed) != OperationStatus.Done)
                return at;
            at += consumed;
        }

        return at;
    }

    private static string Describe(JsonTokenType token) => token switch
    {
        JsonTokenType.StartObject => "an object",
        JsonTokenType.StartArray => "an array",
        JsonTokenType.String => "a string",
        JsonTokenType.Number => "a number",
        JsonTokenType.True or JsonTokenType.False => "a boolean",
        JsonTokenType.Null => "null",
        _ => token.ToString(),
    };

    private static string Expected(FittedFeature feature) => feature.Kind switch
    {
        FeatureKind.Numeric => "a number, a numeric string, true/false or null",
        FeatureKind.Categorical => "a string, a number, true/false or null",
        _ => $"true/false, 0/1, null or one of the tokens {string.Join("/", feature.FalseTokens)} (0), {string.Join("/", feature.TrueTokens)} (1)",
    };

    private static string Excerpt(ReadOnlySpan<byte> raw) =>
        raw.Length <= ExcerptBytes ? Encoding.UTF8.GetString(raw) : Encoding.UTF8.GetString(raw[..ExcerptBytes]) + "…";
}
