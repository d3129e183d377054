using System.Buffers;
using System.Text;
using System.Text.Json;

namespace AnomalyVae.Events;

/// <summary>
/// The text stored in <c>anomalies.event</c> (jsonb). The decoder has validated the payload as a JSON object,
/// but jsonb is stricter than JSON: it rejects the escape \u0000 and numbers beyond its numeric range. Such
/// events are stored as {"payload_base64": ..., "stored_as": "base64"} instead, so they are kept, not lost.
/// </summary>
public static class EventJson
{
    /// <summary>Exponents beyond this (and very long number literals) are not passed to jsonb.</summary>
    private const int MaxExponent = 1000;
    private const int MaxNumberLength = 1000;

    public static string ForJsonb(ReadOnlySpan<byte> payload, bool wrap = false)
    {
        // The decoder skips a UTF-8 byte-order mark; jsonb does not.
        if (payload.StartsWith((ReadOnlySpan<byte>)[0xEF, 0xBB, 0xBF]))
            payload = payload[3..];
        if (!wrap && IsSafe(payload))
            return Encoding.UTF8.GetString(payload);
        var output = new ArrayBufferWriter<byte>(payload.Length * 4 / 3 + 64);
        using (var writer = new Utf8JsonWriter(output))
        {
            writer.WriteStartObject();
            writer.WriteBase64String("payload_base64", payload);
            writer.WriteString("stored_as", "base64");
            writer.WriteEndObject();
        }
        return Encoding.UTF8.GetString(output.WrittenSpan);
    }

    /// <summary>
    /// The payload bytes behind a stored <c>event</c> text: the text itself, or the original bytes of a
    /// base64-wrapped one (exactly the two properties <see cref="ForJsonb"/> writes), so readers such as
    /// retraining see every stored event as serve decoded it.
    /// </summary>
    public static byte[] FromJsonb(string stored)
    {
        var bytes = Encoding.UTF8.GetBytes(stored);
        if (!stored.Contains("\"stored_as\"", StringComparison.Ordinal))
            return bytes;
        using var document = JsonDocument.Parse(bytes);
        var root = document.RootElement;
        if (root.ValueKind == JsonValueKind.Object && root.EnumerateObject().Count() == 2
            && root.TryGetProperty("stored_as", out var kind) && kind.ValueKind == JsonValueKind.String && kind.ValueEquals("base64")
            && root.TryGetProperty("payload_base64", out var payload) && payload.ValueKind == JsonValueKind.String
            && payload.TryGetBytesFromBase64(out var original))
            return original;
        return bytes;
    }

    /// <summary>Whether jsonb accepts the payload as it is.</summary>
    public static bool IsSafe(ReadOnlySpan<byte> payload)
    {
        if (payload.IndexOf("\\u0000"u8) >= 0)
            return false;
        var reader = new Utf8JsonReader(payload, new JsonReaderOptions { MaxDepth = 1000 });
        try
        {
            while (reader.Read())
            {
                if (reader.TokenType == JsonTokenType.Number && !IsSafeNumber(reader.HasValueSequence ? reader.ValueSequence.ToArray() : reader.ValueSpan))
                    return false;
            }
            return true;
        }
        catch (JsonException)
        {
            return false;
        }
    }

    private static bool IsSafeNumber(ReadOnlySpan<byte> number)
    {
        if (number.Length > MaxNumberLength)
            return false;
        int e = number.IndexOfAny((byte)'e', (byte)'E');
        if (e < 0)
            return true;
        var exponent = number[(e + 1)..];
        if (exponent.Length > 0 && (exponent[0] == (byte)'+' || exponent[0] == (byte)'-'))
            exponent = exponent[1..];
        exponent = exponent.TrimStart((byte)'0');
        if (exponent.Length > 4)
            return false;
        int value = 0;
        foreach (byte digit in exponent)
            value = value * 10 + (digit - '0');
        return value <= MaxExponent;
    }
}
