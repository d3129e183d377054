using System.Buffers.Binary;
using System.Diagnostics.CodeAnalysis;

namespace AnomalyVae.Storage;

/// <summary>
/// A position in the anomaly list, ordered by (detected_at desc, id desc): the last row of a page. The next page
/// starts strictly after it, so rows inserted later (newer detected_at) never shift or repeat a page.
/// </summary>
/// <remarks>Encoded as base64url of a version byte, the detection time in microseconds since the Unix epoch
/// (PostgreSQL's resolution, so it round-trips exactly) and the id, big-endian: opaque to clients, and strictly
/// validated when read back (any tampering that breaks the form is a 400, never a query).</remarks>
public readonly record struct AnomalyCursor(DateTimeOffset DetectedAt, long Id)
{
    private const byte FormatVersion = 1;
    private const int Length = 17;

    // Years 1..9999, the range DateTimeOffset can hold.
    private static readonly long MinMicros = ToUnixMicroseconds(DateTimeOffset.MinValue);
    private static readonly long MaxMicros = ToUnixMicroseconds(DateTimeOffset.MaxValue);

    public string Encode()
    {
        Span<byte> bytes = stackalloc byte[Length];
        bytes[0] = FormatVersion;
        BinaryPrimitives.WriteInt64BigEndian(bytes[1..], ToUnixMicroseconds(DetectedAt));
        BinaryPrimitives.WriteInt64BigEndian(bytes[9..], Id);
        return Convert.ToBase64String(bytes).TrimEnd('=').Replace('+', '-').Replace('/', '_');
    }

    /// <summary>Reads a cursor written by <see cref="Encode"/>; false for anything else.</summary>
    public static bool TryDecode(string? text, [NotNullWhen(true)] out AnomalyCursor? cursor)
    {
        cursor = null;
        // 17 bytes are 23 base64 characters without padding.
        if (text is null || text.Length != 23)
            return false;
        var base64 = text.Replace('-', '+').Replace('_', '/') + "=";
        Span<byte> bytes = stackalloc byte[Length + 2];
        if (!Convert.TryFromBase64String(base64, bytes, out var written) || written != Length || bytes[0] != FormatVersion)
            return false;
        long micros = BinaryPrimitives.ReadInt64BigEndian(bytes[1..]);
        long id = BinaryPrimitives.ReadInt64BigEndian(bytes[9..]);
        if (id < 0 || micros < MinMicros || micros > MaxMicros)
            return false;
        var decoded = new AnomalyCursor(DateTimeOffset.UnixEpoch.AddTicks(micros * 10), id);
        // Only the canonical spelling: base64 tolerates stray bits in the last character, which would let two
        // different strings mean one position.
        if (decoded.Encode() != text)
            return false;
        cursor = decoded;
        return true;
    }

    internal static long ToUnixMicroseconds(DateTimeOffset time) => (time.UtcTicks - DateTimeOffset.UnixEpoch.UtcTicks) / 10;
}
