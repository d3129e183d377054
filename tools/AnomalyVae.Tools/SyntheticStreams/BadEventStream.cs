using System.Globalization;
using System.Text;
using System.Text.Json;
using AnomalyVae.Events;
using AnomalyVae.Model;

namespace AnomalyVae.Tools;

/// <summary>A payload a detector must dead-letter, and the reason code it must give (<see cref="EventDecodeResult.Code"/>).</summary>
public readonly record struct BadEvent(byte[] Payload, string Reason);

/// <summary>
/// Bad payloads by construction, for robustness tests and the fuzz-mix benchmark: each is a valid event with exactly
/// one fault, so its dead-letter reason is known without asking the decoder; together they cover every reason
/// <see cref="EventDecoder"/> gives. Same seed and inputs, same payloads; no line breaks, so one per line (kcat -l).
/// </summary>
public sealed class BadEventStream
{
    private static readonly string[] s_notANumber = ["\"abc\"", "\"12abc\"", "\"1,5\"", "\"--1\"", "\"one\"", "{}", "[]", "[1]", "{\"v\":1}"];
    private static readonly string[] s_notFinite = ["\"NaN\"", "\"nan\"", "\" NaN \"", "\"Infinity\"", "\"-Infinity\"", "\"inf\"", "\"-inf\"", "1e999", "-1e400", "2e308"];
    private static readonly string[] s_badTimes = ["\"yesterday\"", "\"2024-13-45T00:00:00Z\"", "\"not a time\"", "\"12:00\"", "true", "false", "{}", "[1]", "1e300", "-99999999999999999"];
    private static readonly string[] s_notObjects = ["[]", "[1,2,3]", "\"event\"", "42", "-1.5", "true", "false", "null", " [ {} ] "];
    private static readonly byte[][] s_invalidUtf8 = [[0xFF], [0xFE], [0x80], [0xC0, 0x80], [0xED, 0xA0, 0x80], [0xF5, 0x80, 0x80, 0x80], [0xE2, 0x82]];
    private static readonly string[] s_syntaxErrors = ["{'a':1}", "{\"a\":NaN}", "{\"a\":Infinity}", "{\"a\":1,}", "{\"a\" 1}", "{\"a\":1 \"b\":2}", "{a:1}", "{\"a\":1}/*c*/", "{\"a\":01}", "{\"a\":.5}", "{", "}", "{\"a\":[1,2}"];

    private readonly FeatureSchema _schema;
    private readonly string? _entityField;
    private readonly string? _timeField;
    private readonly int _maxPayloadBytes;
    private readonly int _maxDepth;
    private readonly SeededRandom _random;
    private readonly int[] _numeric;
    private readonly int[] _binary;
    private readonly string _padName;
    private readonly string[] _reasons;

    /// <summary>Creates a generator for events of <paramref name="schema"/> as a decoder with these settings reads them.</summary>
    /// <param name="schema">The model's features.</param>
    /// <param name="entityField">The detector's entity field, or null (then no bad_entity faults).</param>
    /// <param name="timeField">The detector's event-time field, or null (then no bad_event_time faults).</param>
    /// <param name="maxPayloadBytes">The decoder's largest payload; oversized faults are up to twice this.</param>
    /// <param name="maxDepth">The decoder's deepest nesting.</param>
    /// <param name="seed">Random seed.</param>
    public BadEventStream(FeatureSchema schema, string? entityField, string? timeField, int maxPayloadBytes,
        int maxDepth = EventDecoder.DefaultMaxDepth, long seed = 1)
    {
        ArgumentNullException.ThrowIfNull(schema);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxPayloadBytes, 2);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(maxPayloadBytes, 64 << 20);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxDepth, 1);
        _schema = schema;
        _entityField = string.IsNullOrEmpty(entityField) ? null : entityField;
        _timeField = string.IsNullOrEmpty(timeField) ? null : timeField;
        _maxPayloadBytes = maxPayloadBytes;
        _maxDepth = maxDepth;
        _random = new SeededRandom(seed);
        _numeric = [.. Enumerable.Range(0, schema.Count).Where(i => schema.Features[i].Kind == FeatureKind.Numeric)];
        _binary = [.. Enumerable.Range(0, schema.Count).Where(i => schema.Features[i].Kind == FeatureKind.Binary)];
        // A field no role reads, for padding and nesting.
        _padName = "_fuzz";
        while (IsKnown(_padName))
            _padName += "_";
        var reasons = new List<string> { "malformed_json", "not_an_object", "oversized", "too_deep", "duplicate_key" };
        if (_numeric.Length > 0 || _binary.Length > 0 || schema.Count > 0)
            reasons.Add("wrong_type");
        if (_numeric.Length > 0)
            reasons.AddRange(["not_finite", "out_of_range"]);
        if (_timeField is not null)
            reasons.Add("bad_event_time");
        if (_entityField is not null)
            reasons.Add("bad_entity");
        _reasons = [.. reasons];
    }

    /// <summary>The reason codes this generator produces (each with equal probability).</summary>
    public IReadOnlyList<string> Reasons => _reasons;

    /// <summary>
    /// A bad variant of <paramref name="validEvent"/>: a JSON object (the detector's features, optionally entity and
    /// time) that decodes; it must be compact, ASCII and without line breaks.
    /// </summary>
    /// <exception cref="ArgumentException"><paramref name="validEvent"/> is not a JSON object.</exception>
    public BadEvent Next(ReadOnlySpan<byte> validEvent)
    {
        var fields = Fields(validEvent);
        if (validEvent.Length > _maxPayloadBytes)
            throw new ArgumentException($"the valid event is {validEvent.Length} bytes, more than the maximum {_maxPayloadBytes}", nameof(validEvent));
        while (true)
        {
            var reason = _reasons[_random.NextInt(_reasons.Length)];
            var payload = Fault(reason, validEvent, fields);
            // A fault that made the payload too large would be reported as oversized instead: draw another.
            if (reason == "oversized" || payload.Length <= _maxPayloadBytes)
                return new BadEvent(payload, reason);
        }
    }

    private byte[] Fault(string reason, ReadOnlySpan<byte> validEvent, List<KeyValuePair<string, string>> fields) =>
        reason switch
        {
            "malformed_json" => Malformed(validEvent, fields),
            "not_an_object" => _random.Chance(0.3)
                ? Encoding.UTF8.GetBytes($"[{Encoding.UTF8.GetString(validEvent)}]")
                : Encoding.UTF8.GetBytes(Pick(s_notObjects)),
            "wrong_type" => WrongType(fields),
            "not_finite" => Write(Replace(fields, _schema.Features[Pick(_numeric)].Name, Pick(s_notFinite))),
            "out_of_range" => Write(Replace(fields, _schema.Features[Pick(_numeric)].Name, OutOfRange())),
            "oversized" => Oversized(fields),
            "too_deep" => TooDeep(fields),
            "duplicate_key" => Duplicate(fields),
            "bad_event_time" => Write(Replace(fields, _timeField!, Pick(s_badTimes))),
            _ => Write(Replace(fields, _entityField!, BadEntity(validEvent.Length))),
        };

    private byte[] Malformed(ReadOnlySpan<byte> valid, List<KeyValuePair<string, string>> fields)
    {
        switch (_random.NextInt(7))
        {
            case 0:
                // Truncated anywhere, down to the empty payload.
                return valid[.._random.NextInt(valid.Length)].ToArray();
            case 1:
                {
                    var invalid = Pick(s_invalidUtf8);
                    int at = _random.NextInt(valid.Length + 1);
                    return [.. valid[..at], .. invalid, .. valid[at..]];
                }
            case 2:
                return Encoding.UTF8.GetBytes(Pick(s_syntaxErrors));
            case 3:
                // Content after the object.
                return [.. valid, .. Encoding.UTF8.GetBytes(_random.Chance(0.5) ? "{}" : " x")];
            case 4:
                return Write(With(fields, _padName, _random.Chance(0.5) ? "\"\\ud800\"" : "\"a\\udc00b\""));
            case 5:
                // A raw control character inside a string.
                return Write(With(fields, _padName, "\"a\u0001b\""));
            default:
                // A property separator removed.
                var text = Encoding.UTF8.GetString(valid);
                int comma = text.IndexOf(',', _random.NextInt(Math.Max(1, text.Length / 2)));
                return comma < 0 ? Encoding.UTF8.GetBytes(text + "}") : Encoding.UTF8.GetBytes(text.Remove(comma, 1));
        }
    }

    private byte[] WrongType(List<KeyValuePair<string, string>> fields)
    {
        // Numeric: a non-numeric string or a container; binary: another number or token; any kind: a container.
        int choice = _random.NextInt(3);
        if (choice == 0 && _numeric.Length > 0)
            return Write(Replace(fields, _schema.Features[Pick(_numeric)].Name, Pick(s_notANumber)));
        if (choice == 1 && _binary.Length > 0)
        {
            var feature = _schema.Features[Pick(_binary)];
            string token = "maybe";
            while (feature.TrueTokens.Contains(token, StringComparer.OrdinalIgnoreCase) || feature.FalseTokens.Contains(token, StringComparer.OrdinalIgnoreCase))
                token += "?";
            string[] values = ["2", "0.5", "-1", $"\"{token}\"", "[]"];
            return Write(Replace(fields, feature.Name, Pick(values)));
        }
        string[] containers = ["{}", "[]", "[\"red\"]", "{\"x\":1}"];
        return Write(Replace(fields, _schema.Features[_random.NextInt(_schema.Count)].Name, Pick(containers)));
    }

    private string OutOfRange()
    {
        double mantissa = _random.Uniform(1.01, 9.99);
        int exponent = _random.NextInt(16, 300);
        string sign = _random.Chance(0.5) ? "-" : "";
        string number = string.Create(CultureInfo.InvariantCulture, $"{sign}{mantissa:F3}e{exponent}");
        return _random.Chance(0.2) ? $"\"{number}\"" : number;
    }

    private byte[] Oversized(List<KeyValuePair<string, string>> fields)
    {
        int target = _maxPayloadBytes + 1 + _random.NextInt(_maxPayloadBytes);
        int size = Write(fields).Length + _padName.Length + 6;
        var padding = new string('x', Math.Max(1, target - size));
        var payload = Write(With(fields, _padName, $"\"{padding}\""));
        return payload.Length > _maxPayloadBytes ? payload : [.. payload, .. Encoding.UTF8.GetBytes(new string(' ', _maxPayloadBytes))];
    }

    private byte[] TooDeep(List<KeyValuePair<string, string>> fields)
    {
        // The top-level object is level 1, so k nested containers inside it reach level k + 1.
        int levels = _maxDepth + _random.NextInt(0, 40);
        bool arrays = _random.Chance(0.5);
        var nested = new StringBuilder();
        for (int i = 0; i < levels; i++)
            nested.Append(arrays ? "[" : "{\"n\":");
        nested.Append('1');
        for (int i = 0; i < levels; i++)
            nested.Append(arrays ? ']' : '}');
        // In an ignored field, or as a feature's value (the depth error wins over the type error).
        var name = _random.Chance(0.5) ? _padName : _schema.Features[_random.NextInt(_schema.Count)].Name;
        return Write(name == _padName ? With(fields, name, nested.ToString()) : Replace(fields, name, nested.ToString()));
    }

    private byte[] Duplicate(List<KeyValuePair<string, string>> fields)
    {
        // Any field a role reads, repeated later with its own (valid) value.
        var known = fields.Where(f => IsKnown(f.Key)).ToList();
        var repeated = known.Count > 0 ? known[_random.NextInt(known.Count)] : new(_schema.Features[0].Name, "null");
        var copy = new List<KeyValuePair<string, string>>(fields);
        if (!copy.Any(f => f.Key == repeated.Key))
            copy.Add(repeated);
        copy.Insert(_random.NextInt(copy.Count + 1), repeated);
        return Write(copy);
    }

    private string BadEntity(int validLength) => _random.NextInt(4) switch
    {
        0 => "{}",
        1 => "[\"m1\"]",
        2 => _random.Chance(0.5) ? "true" : "false",
        // Too long, yet leaving the payload within the size limit where it can.
        _ => $"\"{new string('e', EventDecoder.MaxEntityBytes + 1 + _random.NextInt(Math.Clamp(_maxPayloadBytes - validLength - EventDecoder.MaxEntityBytes - 16, 1, 1000)))}\"",
    };

    private bool IsKnown(string name) => _schema.TryGetIndex(name, out _) || name == _entityField || name == _timeField;

    private T Pick<T>(T[] values) => values[_random.NextInt(values.Length)];

    private static List<KeyValuePair<string, string>> Replace(List<KeyValuePair<string, string>> fields, string name, string rawValue)
    {
        var copy = new List<KeyValuePair<string, string>>(fields);
        int at = copy.FindIndex(f => f.Key == name);
        if (at >= 0)
            copy[at] = new(name, rawValue);
        else
            copy.Add(new(name, rawValue));
        return copy;
    }

    private List<KeyValuePair<string, string>> With(List<KeyValuePair<string, string>> fields, string name, string rawValue)
    {
        var copy = new List<KeyValuePair<string, string>>(fields);
        copy.Insert(_random.NextInt(copy.Count + 1), new(name, rawValue));
        return copy;
    }

    private static byte[] Write(List<KeyValuePair<string, string>> fields)
    {
        var text = new StringBuilder("{");
        foreach (var (name, value) in fields)
        {
            if (text.Length > 1)
                text.Append(',');
            text.Append(JsonSerializer.Serialize(name)).Append(':').Append(value);
        }
        return Encoding.UTF8.GetBytes(text.Append('}').ToString());
    }

    private static List<KeyValuePair<string, string>> Fields(ReadOnlySpan<byte> validEvent)
    {
        try
        {
            var reader = new Utf8JsonReader(validEvent);
            using var document = JsonDocument.ParseValue(ref reader);
            if (document.RootElement.ValueKind != JsonValueKind.Object)
                throw new ArgumentException("the valid event must be a JSON object", nameof(validEvent));
            return [.. document.RootElement.EnumerateObject().Select(p => new KeyValuePair<string, string>(p.Name, p.Value.GetRawText()))];
        }
        catch (JsonException e)
        {
            throw new ArgumentException($"the valid event is not JSON: {e.Message}", nameof(validEvent), e);
        }
    }
}
