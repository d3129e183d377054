using System.Buffers;
using System.Text;
using System.Text.Json;

namespace AnomalyVae.Events;

/// <summary>
/// Why an event could not be decoded. The numeric values and the snake_case codes
/// (<see cref="EventDecodeResult.CodeOf"/>) are stable: they travel in dead letters and metrics labels.
/// </summary>
public enum EventDecodeError
{
    /// <summary>Decoded (code "none").</summary>
    None = 0,

    /// <summary>Not JSON: a syntax error, a truncated payload, invalid UTF-8, an invalid \u escape, or an empty
    /// payload (code "malformed_json").</summary>
    MalformedJson = 1,

    /// <summary>Valid JSON whose top-level value is not an object (code "not_an_object").</summary>
    NotAnObject = 2,

    /// <summary>A feature's value cannot be read as the feature's kind: an object or array, a string that is not a
    /// number (numeric), a number other than 0/1 or an unmapped token (binary) (code "wrong_type").</summary>
    WrongType = 3,

    /// <summary>A numeric feature is NaN or ±infinity: the strings "NaN"/"Infinity"/"inf", or a number too large
    /// for a double (code "not_finite").</summary>
    NotFinite = 4,

    /// <summary>A numeric feature beyond ±<see cref="EventDecoder.MaxAbsNumericValue"/> (code "out_of_range").</summary>
    OutOfRange = 5,

    /// <summary>The payload is larger than the decoder's maximum; checked before parsing (code "oversized").</summary>
    Oversized = 6,

    /// <summary>A feature, entity or event-time field appears twice in the event (code "duplicate_key").</summary>
    DuplicateKey = 7,

    /// <summary>The event-time field is present but not an ISO-8601 string or epoch-milliseconds number in range
    /// (code "bad_event_time").</summary>
    BadEventTime = 8,

    /// <summary>The entity field is present but not a string or number, or longer than
    /// <see cref="EventDecoder.MaxEntityBytes"/> (code "bad_entity").</summary>
    BadEntity = 9,

    /// <summary>Objects/arrays nested deeper than the decoder's maximum depth (code "too_deep").</summary>
    TooDeep = 10,
}

/// <summary>
/// The outcome of decoding one event: success with the event's entity and time, or an error code, a human
/// message and where in the payload the problem is. Success carries no message and allocates nothing.
/// </summary>
public readonly struct EventDecodeResult
{
    private readonly string? _message;

    internal EventDecodeResult(EventDecodeError error, string? message, int feature, long position,
        EventEntity entity, DateTimeOffset? eventTime, int presentFeatures)
    {
        Error = error;
        _message = message;
        Feature = feature;
        Position = position;
        Entity = entity;
        EventTime = eventTime;
        PresentFeatures = presentFeatures;
    }

    /// <summary><see cref="EventDecodeError.None"/> on success.</summary>
    public EventDecodeError Error { get; }

    /// <summary>Whether the row was decoded (x/mask hold the event).</summary>
    public bool IsSuccess => Error == EventDecodeError.None;

    /// <summary>The stable snake_case code of <see cref="Error"/> ("none" on success).</summary>
    public string Code => CodeOf(Error);

    /// <summary>What went wrong, for people (names the field and the byte offset); empty on success.</summary>
    public string Message => _message ?? "";

    /// <summary>Index of the feature the error is about, or -1.</summary>
    public int Feature { get; }

    /// <summary>Byte offset in the payload where the problem was found, or -1 when it is about the whole payload.</summary>
    public long Position { get; }

    /// <summary>The entity field's value (a range of the payload); <see cref="EventEntity.IsPresent"/> is false
    /// when no entity field is configured, the field is absent, null or "".</summary>
    public EventEntity Entity { get; }

    /// <summary>The event time in UTC (offset 0), or null when no time field is configured, it is absent, null or "".</summary>
    public DateTimeOffset? EventTime { get; }

    /// <summary>How many features are present (mask 1). 0 means the event shares no field with the model, which
    /// the caller may want to count or reject: per the contract it is still a valid, all-missing row.</summary>
    public int PresentFeatures { get; }

    /// <summary>The stable snake_case code of an error.</summary>
    public static string CodeOf(EventDecodeError error) => error switch
    {
        EventDecodeError.None => "none",
        EventDecodeError.MalformedJson => "malformed_json",
        EventDecodeError.NotAnObject => "not_an_object",
        EventDecodeError.WrongType => "wrong_type",
        EventDecodeError.NotFinite => "not_finite",
        EventDecodeError.OutOfRange => "out_of_range",
        EventDecodeError.Oversized => "oversized",
        EventDecodeError.DuplicateKey => "duplicate_key",
        EventDecodeError.BadEventTime => "bad_event_time",
        EventDecodeError.BadEntity => "bad_entity",
        EventDecodeError.TooDeep => "too_deep",
        _ => throw new ArgumentOutOfRangeException(nameof(error), error, "unknown event decode error"),
    };

    /// <inheritdoc/>
    public override string ToString() => IsSuccess ? "none" : $"{Code}: {Message}";
}

/// <summary>
/// Where an event's entity value lies in its payload, so decoding allocates nothing: callers materialize the
/// text only for events they keep (<see cref="GetString"/>, <see cref="TryCopyTo"/>). A number is kept as
/// written ("id": 0042 is not valid JSON, but "id": 1.50 stays "1.50").
/// </summary>
public readonly struct EventEntity
{
    private readonly int _startPlusOne;

    internal EventEntity(int start, int length, bool isString, bool isEscaped)
    {
        // Start is stored +1 so that default(EventEntity) means "absent".
        _startPlusOne = start + 1;
        Length = length;
        IsString = isString;
        IsEscaped = isEscaped;
    }

    /// <summary>Whether the event has an entity.</summary>
    public bool IsPresent => _startPlusOne > 0;

    /// <summary>Byte offset of the value in the payload (inside the quotes for strings); -1 when absent.</summary>
    public int Start => _startPlusOne - 1;

    /// <summary>Length in bytes of the value as written (escapes not yet resolved).</summary>
    public int Length { get; }

    /// <summary>Whether the value was a JSON string (else a number).</summary>
    public bool IsString { get; }

    /// <summary>Whether the string contains escapes (\" \\ \uXXXX ...), resolved by <see cref="GetString"/>/<see cref="TryCopyTo"/>.</summary>
    public bool IsEscaped { get; }

    /// <summary>The raw UTF-8 bytes as written in <paramref name="payload"/> (the decoded payload).</summary>
    public ReadOnlySpan<byte> RawUtf8(ReadOnlySpan<byte> payload) => IsPresent ? payload.Slice(Start, Length) : default;

    /// <summary>The entity text, escapes resolved; null when absent. <paramref name="payload"/> must be the payload
    /// this entity was decoded from.</summary>
    public string? GetString(ReadOnlySpan<byte> payload)
    {
        if (!IsPresent)
            return null;
        if (!IsEscaped)
            return Encoding.UTF8.GetString(RawUtf8(payload));
        var reader = QuotedReader(payload);
        return reader.GetString();
    }

    /// <summary>Writes the entity text (escapes resolved) into <paramref name="destination"/> without allocating.</summary>
    /// <returns>false when absent or when <paramref name="destination"/> is too short (<see cref="Length"/> chars always suffice).</returns>
    public bool TryCopyTo(ReadOnlySpan<byte> payload, Span<char> destination, out int written)
    {
        written = 0;
        if (!IsPresent)
            return false;
        if (!IsEscaped)
            return Encoding.UTF8.TryGetChars(RawUtf8(payload), destination, out written);
        var reader = QuotedReader(payload);
        // Unescaped text is never longer than the escaped text, so Length chars always suffice.
        if (destination.Length >= Length)
        {
            written = reader.CopyString(destination);
            return true;
        }

        var rented = ArrayPool<char>.Shared.Rent(Length);
        try
        {
            var count = reader.CopyString(rented);
            if (count > destination.Length)
                return false;
            rented.AsSpan(0, count).CopyTo(destination);
            written = count;
            return true;
        }
        finally
        {
            ArrayPool<char>.Shared.Return(rented);
        }
    }

    private Utf8JsonReader QuotedReader(ReadOnlySpan<byte> payload)
    {
        // The decoder validated this string; re-read it with its quotes so the reader resolves the escapes.
        var reader = new Utf8JsonReader(payload.Slice(Start - 1, Length + 2));
        reader.Read();
        return reader;
    }
}
