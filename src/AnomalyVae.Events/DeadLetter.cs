using System.Buffers;
using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace AnomalyVae.Events;

/// <summary>
/// An event that cannot be scored, with why and where it came from, as the JSON envelope written to the dead-letter
/// topic (schemas/dead-letter.schema.json; Kafka 0.9 has no record headers). The payload is the base64 of its exact
/// bytes, cut beyond the writer's limit (payload_length keeps the original size). See docs/streaming.md.
/// </summary>
public sealed partial class DeadLetter
{
    /// <summary>Default most payload bytes kept: 600 KiB becomes 800 KiB of base64, which with the other fields stays
    /// under Kafka's default 1,000,012-byte message limit.</summary>
    public const int DefaultMaxPayloadBytes = 600 * 1024;

    /// <summary>Longest message kept, in chars; longer messages are cut (with "…").</summary>
    public const int MaxMessageLength = 4096;

    private static readonly JsonWriterOptions s_writerOptions = new()
    {
        // Keep quotes, apostrophes and non-ASCII text readable for people reading the topic with kcat; the
        // envelope is never embedded in HTML.
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    /// <summary>Creates an envelope; <paramref name="receivedAt"/> is stored in UTC.</summary>
    /// <param name="reason">Stable snake_case code, e.g. an <see cref="EventDecodeResult.Code"/> or a scoring failure code.</param>
    /// <param name="message">Human explanation (cut to <see cref="MaxMessageLength"/>; invalid UTF-16 replaced).</param>
    /// <param name="payloadLength">The original payload's length when <paramref name="payload"/> is a prefix of it; by default its length.</param>
    /// <exception cref="ArgumentException">A reason that is not snake_case, an empty detector or topic, negative
    /// partition/offset, or a payload length below the payload's.</exception>
    public DeadLetter(string reason, string message, string detector, string topic, int partition, long offset,
        DateTimeOffset receivedAt, ReadOnlyMemory<byte> payload, long? payloadLength = null)
    {
        ArgumentNullException.ThrowIfNull(reason);
        ArgumentNullException.ThrowIfNull(message);
        ArgumentException.ThrowIfNullOrWhiteSpace(detector);
        ArgumentException.ThrowIfNullOrWhiteSpace(topic);
        if (!ReasonPattern().IsMatch(reason))
            throw new ArgumentException($"reason '{reason}' must be a snake_case code (a-z, 0-9, _; at most 64 chars)", nameof(reason));
        ArgumentOutOfRangeException.ThrowIfNegative(partition);
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        var length = payloadLength ?? payload.Length;
        ArgumentOutOfRangeException.ThrowIfLessThan(length, payload.Length, nameof(payloadLength));

        Reason = reason;
        Message = Clean(message);
        Detector = detector;
        Topic = topic;
        Partition = partition;
        Offset = offset;
        ReceivedAt = receivedAt.ToUniversalTime();
        Payload = payload;
        PayloadLength = length;
    }

    /// <summary>Stable snake_case reason code.</summary>
    public string Reason { get; }

    /// <summary>Human explanation.</summary>
    public string Message { get; }

    /// <summary>Detector that consumed the event.</summary>
    public string Detector { get; }

    /// <summary>Source topic.</summary>
    public string Topic { get; }

    /// <summary>Source partition.</summary>
    public int Partition { get; }

    /// <summary>Source offset.</summary>
    public long Offset { get; }

    /// <summary>When the service received the event, in UTC.</summary>
    public DateTimeOffset ReceivedAt { get; }

    /// <summary>The event's bytes as kept (a prefix when <see cref="PayloadTruncated"/>).</summary>
    public ReadOnlyMemory<byte> Payload { get; }

    /// <summary>Length of the original payload in bytes.</summary>
    public long PayloadLength { get; }

    /// <summary>Whether <see cref="Payload"/> is only a prefix of the original payload.</summary>
    public bool PayloadTruncated => PayloadLength > Payload.Length;

    /// <summary>The envelope for an event the <see cref="EventDecoder"/> rejected: reason and message from the result.</summary>
    /// <exception cref="ArgumentException"><paramref name="failure"/> is a success.</exception>
    public static DeadLetter ForDecodeFailure(in EventDecodeResult failure, string detector, string topic, int partition,
        long offset, DateTimeOffset receivedAt, ReadOnlyMemory<byte> payload)
    {
        if (failure.IsSuccess)
            throw new ArgumentException("a decoded event is not a dead letter", nameof(failure));
        return new DeadLetter(failure.Code, failure.Message, detector, topic, partition, offset, receivedAt, payload);
    }

    /// <summary>Writes the JSON envelope (UTF-8) to <paramref name="output"/>, keeping at most
    /// <paramref name="maxPayloadBytes"/> bytes of the payload.</summary>
    public void WriteTo(IBufferWriter<byte> output, int maxPayloadBytes = DefaultMaxPayloadBytes)
    {
        ArgumentNullException.ThrowIfNull(output);
        ArgumentOutOfRangeException.ThrowIfNegative(maxPayloadBytes);
        var kept = Payload.Span[..Math.Min(Payload.Length, maxPayloadBytes)];
        using var writer = new Utf8JsonWriter(output, s_writerOptions);
        writer.WriteStartObject();
        writer.WriteString("reason", Reason);
        writer.WriteString("message", Message);
        writer.WriteString("detector", Detector);
        writer.WriteString("topic", Topic);
        writer.WriteNumber("partition", Partition);
        writer.WriteNumber("offset", Offset);
        writer.WriteString("received_at", ReceivedAt.UtcDateTime);
        writer.WriteNumber("payload_length", PayloadLength);
        writer.WriteBoolean("payload_truncated", PayloadLength > kept.Length);
        writer.WriteBase64String("payload_base64", kept);
        writer.WriteEndObject();
    }

    /// <summary>The JSON envelope as one array (what a Kafka producer sends), built in a pooled buffer.</summary>
    public byte[] ToUtf8(int maxPayloadBytes = DefaultMaxPayloadBytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(maxPayloadBytes);
        var kept = Math.Min(Payload.Length, maxPayloadBytes);
        using var buffer = new PooledBufferWriter(((kept + 2) / 3 * 4) + (Message.Length * 3) + 512);
        WriteTo(buffer, maxPayloadBytes);
        return buffer.WrittenSpan.ToArray();
    }

    /// <summary>Reads an envelope back (for tools that inspect or replay the dead-letter topic).</summary>
    /// <exception cref="FormatException">Not an envelope: malformed JSON, a missing or mistyped field, bad base64.</exception>
    public static DeadLetter Parse(ReadOnlySpan<byte> utf8Json)
    {
        JsonDocument document;
        try
        {
            var reader = new Utf8JsonReader(utf8Json);
            document = JsonDocument.ParseValue(ref reader);
        }
        catch (JsonException e)
        {
            throw new FormatException($"dead letter is not valid JSON: {e.Message}", e);
        }

        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw new FormatException("a dead letter must be a JSON object");
            var payloadText = Field(root, "payload_base64", JsonValueKind.String);
            if (!payloadText.TryGetBytesFromBase64(out var payload))
                throw new FormatException("dead letter field \"payload_base64\" is not valid base64");
            var receivedText = Field(root, "received_at", JsonValueKind.String);
            if (!receivedText.TryGetDateTimeOffset(out var receivedAt))
                throw new FormatException($"dead letter field \"received_at\" is not an ISO-8601 time: {receivedText.GetString()}");
            var partition = Field(root, "partition", JsonValueKind.Number);
            var offset = Field(root, "offset", JsonValueKind.Number);
            var length = Field(root, "payload_length", JsonValueKind.Number);
            if (!partition.TryGetInt32(out var partitionValue) || !offset.TryGetInt64(out var offsetValue) || !length.TryGetInt64(out var lengthValue))
                throw new FormatException("dead letter fields \"partition\", \"offset\" and \"payload_length\" must be integers");
            var truncated = Field(root, "payload_truncated", JsonValueKind.True, JsonValueKind.False).GetBoolean();
            if (truncated != lengthValue > payload.Length)
                throw new FormatException($"dead letter says payload_truncated = {truncated} but keeps {payload.Length} of {lengthValue} bytes");
            try
            {
                return new DeadLetter(
                    Field(root, "reason", JsonValueKind.String).GetString()!,
                    Field(root, "message", JsonValueKind.String).GetString()!,
                    Field(root, "detector", JsonValueKind.String).GetString()!,
                    Field(root, "topic", JsonValueKind.String).GetString()!,
                    partitionValue, offsetValue, receivedAt, payload, lengthValue);
            }
            catch (ArgumentException e)
            {
                throw new FormatException($"dead letter has an invalid field: {e.Message}", e);
            }
            catch (InvalidOperationException e)
            {
                // A string field with a \u escape that is a lone surrogate cannot become a .NET string.
                throw new FormatException($"dead letter has an unreadable string: {e.Message}", e);
            }
        }
    }

    private static JsonElement Field(JsonElement root, string name, JsonValueKind kind, JsonValueKind alternative = JsonValueKind.Undefined)
    {
        if (!root.TryGetProperty(name, out var value))
            throw new FormatException($"dead letter has no \"{name}\"");
        if (value.ValueKind != kind && value.ValueKind != alternative)
            throw new FormatException($"dead letter field \"{name}\" must be {kind.ToString().ToLowerInvariant()}, not {value.ValueKind.ToString().ToLowerInvariant()}");
        return value;
    }

    private static string Clean(string message)
    {
        if (message.Length > MaxMessageLength)
            message = string.Concat(message.AsSpan(0, MaxMessageLength - 1), "…");
        // Utf8JsonWriter refuses lone surrogates; a message (often an exception's) must never stop a dead letter.
        if (message.AsSpan().ContainsAnyInRange('\uD800', '\uDFFF'))
            message = Encoding.UTF8.GetString(Encoding.UTF8.GetBytes(message));
        return message;
    }

    [GeneratedRegex("^[a-z][a-z0-9_]{0,63}$", RegexOptions.CultureInvariant)]
    private static partial Regex ReasonPattern();

    /// <inheritdoc/>
    public override string ToString() =>
        string.Create(CultureInfo.InvariantCulture, $"{Reason} {Topic}/{Partition}@{Offset} ({Detector}): {Message}");

    /// <summary>An <see cref="IBufferWriter{T}"/> over arrays from <see cref="ArrayPool{T}.Shared"/>.</summary>
    private sealed class PooledBufferWriter(int initialCapacity) : IBufferWriter<byte>, IDisposable
    {
        private byte[] _buffer = ArrayPool<byte>.Shared.Rent(Math.Max(initialCapacity, 256));
        private int _written;

        public ReadOnlySpan<byte> WrittenSpan => _buffer.AsSpan(0, _written);

        public void Advance(int count)
        {
            ArgumentOutOfRangeException.ThrowIfNegative(count);
            ArgumentOutOfRangeException.ThrowIfGreaterThan(count, _buffer.Length - _written);
            _written += count;
        }

        public Memory<byte> GetMemory(int sizeHint = 0)
        {
            Reserve(sizeHint);
            return _buffer.AsMemory(_written);
        }

        public Span<byte> GetSpan(int sizeHint = 0)
        {
            Reserve(sizeHint);
            return _buffer.AsSpan(_written);
        }

        public void Dispose()
        {
            ArrayPool<byte>.Shared.Return(_buffer);
            _buffer = [];
        }

        private void Reserve(int sizeHint)
        {
            var needed = _written + Math.Max(sizeHint, 1);
            if (needed <= _buffer.Length)
                return;
            var larger = ArrayPool<byte>.Shared.Rent(Math.Max(needed, _buffer.Length * 2));
            WrittenSpan.CopyTo(larger);
            ArrayPool<byte>.Shared.Return(_buffer);
            _buffer = larger;
        }
    }
}
