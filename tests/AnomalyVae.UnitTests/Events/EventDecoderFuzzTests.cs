using System.Text;
using System.Text.Json;
using AnomalyVae.Events;
using AnomalyVae.Model;
using Xunit.Abstractions;

namespace AnomalyVae.UnitTests.Events;

/// <summary>
/// Random, truncated and mutated payloads: every one decodes or reports a reason, never throws, and a success is
/// always a well-formed row of an event that System.Text.Json also reads as an object.
/// </summary>
public class EventDecoderFuzzTests(ITestOutputHelper output)
{
    private static readonly FeatureSchema s_schema = EventDecoderTests.Schema;
    private static readonly EventDecoder s_decoder = new(s_schema, entityField: "machine_id", timeField: "ts", maxPayloadBytes: 2048, maxDepth: 8);

    private static readonly string[] s_seeds =
    [
        """{"temp":21.5,"bytes":"1e3","status":"warn","door":true,"code":7,"machine_id":"m-1","ts":"2024-05-01T12:00:00Z"}""",
        """{"meta":{"a":[1,{"b":"c\n"}],"d":[]},"temp":-3e2,"status":"w\u0061rn","door":"yes","ts":1714564800000}""",
        """{"machine_id":42,"door":0,"code":"3","bytes":null,"x":[[[["deep"]]]],"status":"\ud83d\ude00"}""",
        """{"temp":"NA","status":"","door":false,"ts":"2024-05-01T14:00:00+02:00","y":{"z":{"w":true}}}""",
    ];

    private static readonly byte[] s_jsonish = Encoding.UTF8.GetBytes("{}[]\":,0123456789.eE-+ truefalsnl\\u\"\"abcd");

    [Fact]
    public void EveryPayloadDecodesOrReportsAReason()
    {
        var random = new Random(20240501);
        var cases = new List<byte[]>();

        // Truncations of every seed at every length, and the seeds themselves.
        foreach (var seed in s_seeds.Select(Encoding.UTF8.GetBytes))
        {
            for (var length = 0; length <= seed.Length; length++)
                cases.Add(seed[..length]);
        }

        // Random bytes: half uniform, half from a JSON-looking alphabet.
        for (var i = 0; i < 3000; i++)
        {
            var bytes = new byte[random.Next(0, 120)];
            for (var j = 0; j < bytes.Length; j++)
                bytes[j] = i % 2 == 0 ? (byte)random.Next(256) : s_jsonish[random.Next(s_jsonish.Length)];
            if (i % 4 == 1 && bytes.Length > 0)
                bytes[0] = (byte)'{';
            cases.Add(bytes);
        }

        // Mutations of the seeds: replace, insert, delete, duplicate a slice.
        for (var i = 0; i < 6000; i++)
            cases.Add(Mutate(Encoding.UTF8.GetBytes(s_seeds[random.Next(s_seeds.Length)]), random));

        // Structured random events: valid JSON with values of every type at feature, entity and time fields.
        for (var i = 0; i < 4000; i++)
            cases.Add(Encoding.UTF8.GetBytes(RandomEvent(random)));

        var byCode = new Dictionary<string, int>();
        foreach (var payload in cases)
        {
            var code = Check(payload);
            byCode[code] = byCode.GetValueOrDefault(code) + 1;
        }

        output.WriteLine($"{cases.Count} payloads: " + string.Join(", ", byCode.OrderByDescending(p => p.Value).Select(p => $"{p.Key} {p.Value}")));
        // The fuzz must reach successes and the main failure kinds, or it tests little.
        Assert.True(byCode.GetValueOrDefault("none") > 500, "too few successes");
        foreach (var code in new[] { "malformed_json", "not_an_object", "wrong_type", "not_finite", "out_of_range", "duplicate_key", "bad_event_time", "bad_entity", "too_deep", "oversized" })
            Assert.True(byCode.GetValueOrDefault(code) > 0, $"the fuzz never produced {code}");
    }

    [Fact]
    public void DecoderIsThreadSafe()
    {
        var random = new Random(3);
        var payloads = Enumerable.Range(0, 2000).Select(_ => Encoding.UTF8.GetBytes(RandomEvent(random))).ToArray();
        var expected = payloads.Select(p => Row(p)).ToArray();
        Parallel.For(0, payloads.Length * 4, new ParallelOptions { MaxDegreeOfParallelism = 4 }, i =>
        {
            var (code, x, mask) = Row(payloads[i % payloads.Length]);
            var want = expected[i % payloads.Length];
            Assert.Equal(want.Code, code);
            Assert.Equal(want.X, x);
            Assert.Equal(want.Mask, mask);
        });
    }

    private static (string Code, float[] X, float[] Mask) Row(byte[] payload)
    {
        var x = new float[s_schema.Count];
        var mask = new float[s_schema.Count];
        var result = s_decoder.Decode(payload, x, mask);
        return (result.Code, x, mask);
    }

    private static string Check(byte[] payload)
    {
        var x = Enumerable.Repeat(float.NaN, s_schema.Count).ToArray();
        var mask = Enumerable.Repeat(float.NaN, s_schema.Count).ToArray();
        EventDecodeResult result;
        try
        {
            result = s_decoder.Decode(payload, x, mask);
        }
        catch (Exception e)
        {
            Assert.Fail($"threw {e.GetType().Name} on {Show(payload)}: {e}");
            throw;
        }

        var parsed = ParsesAsObject(payload, out var syntaxValid);
        if (!result.IsSuccess)
        {
            Assert.Matches("^[a-z][a-z_]*$", result.Code);
            Assert.NotEqual("none", result.Code);
            Assert.False(string.IsNullOrWhiteSpace(result.Message), Show(payload));
            Assert.True(result.Position >= -1 && result.Position <= payload.Length, $"position {result.Position} of {Show(payload)}");
            Assert.All(x, v => Assert.Equal(0f, v));
            Assert.All(mask, v => Assert.Equal(0f, v));
            return result.Code;
        }

        // A success must be a JSON object to an independent reader too.
        Assert.True(parsed, $"decoded, but System.Text.Json rejects {Show(payload)}");
        Assert.True(syntaxValid);
        var present = 0;
        for (var f = 0; f < s_schema.Count; f++)
        {
            Assert.True(mask[f] is 0 or 1, Show(payload));
            if (mask[f] == 0)
            {
                Assert.Equal(0f, x[f]);
                continue;
            }

            present++;
            var feature = s_schema.Features[f];
            switch (feature.Kind)
            {
                case FeatureKind.Numeric:
                    Assert.True(float.IsFinite(x[f]) && Math.Abs(x[f]) <= EventDecoder.MaxAbsNumericValue * (1 + 1e-7), Show(payload));
                    break;
                case FeatureKind.Categorical:
                    Assert.True(x[f] == Math.Floor(x[f]) && x[f] >= 0 && x[f] < feature.Cardinality, Show(payload));
                    break;
                default:
                    Assert.True(x[f] is 0 or 1, Show(payload));
                    break;
            }
        }

        Assert.Equal(present, result.PresentFeatures);
        if (result.Entity.IsPresent)
            Assert.NotNull(result.Entity.GetString(payload));
        return result.Code;
    }

    private static bool ParsesAsObject(byte[] payload, out bool syntaxValid)
    {
        var json = payload.AsMemory();
        if (payload.AsSpan().StartsWith((ReadOnlySpan<byte>)[0xEF, 0xBB, 0xBF]))
            json = json[3..];
        try
        {
            using var document = JsonDocument.Parse(json, new JsonDocumentOptions { MaxDepth = 1000 });
            syntaxValid = true;
            return document.RootElement.ValueKind == JsonValueKind.Object;
        }
        catch (JsonException)
        {
            syntaxValid = false;
            return false;
        }
    }

    private static byte[] Mutate(byte[] seed, Random random)
    {
        var bytes = new List<byte>(seed);
        for (var m = random.Next(1, 5); m > 0; m--)
        {
            var at = random.Next(bytes.Count + 1);
            switch (random.Next(5))
            {
                case 0 when at < bytes.Count:
                    bytes[at] = (byte)random.Next(256);
                    break;
                case 1 when at < bytes.Count:
                    bytes[at] = s_jsonish[random.Next(s_jsonish.Length)];
                    break;
                case 2:
                    bytes.Insert(at, s_jsonish[random.Next(s_jsonish.Length)]);
                    break;
                case 3 when at < bytes.Count:
                    bytes.RemoveRange(at, Math.Min(random.Next(1, 6), bytes.Count - at));
                    break;
                default:
                    var from = random.Next(bytes.Count);
                    var slice = bytes.GetRange(from, Math.Min(random.Next(1, 12), bytes.Count - from));
                    bytes.InsertRange(at, slice);
                    break;
            }
        }

        return [.. bytes];
    }

    private static readonly string[] s_fields = ["temp", "bytes", "status", "door", "code", "machine_id", "ts", "other", "te\\u006dp", "nested"];

    private static readonly string[] s_scalars =
    [
        "0", "1", "-1", "2", "21.5", "1e15", "1e16", "-1e400", "1e400", "1e-400", "7", "7.0", "0.5", "1714564800000", "1e20",
        "true", "false", "null",
        "\"\"", "\"ok\"", "\"warn\"", "\"fail\"", "\"zzz\"", "\"NA\"", "\"NaN\"", "\"Infinity\"", "\"12.5\"", "\" 3 \"", "\"yes\"",
        "\"no\"", "\"maybe\"", "\"2024-05-01T12:00:00Z\"", "\"2024-05-01\"", "\"not a time\"", "\"w\\u0061rn\"", "\"\\ud83d\\ude00\"",
        "\"\\ud800\"", "\"a\\\"b\"", "\"" + new string('x', 600) + "\"",
    ];

    private static string RandomEvent(Random random)
    {
        var shape = random.Next(100);
        if (shape < 5)
        {
            // Not an object at the top.
            var top = new StringBuilder();
            AppendValue(top, random, depth: 0);
            return top.ToString();
        }

        if (shape < 10)
        {
            // Deep nesting around a field (the decoder under test allows 8 levels).
            var levels = random.Next(4, 14);
            return "{\"temp\": 1, \"n\": " + new string('[', levels) + "1" + new string(']', levels) + "}";
        }

        if (shape < 13)
            return "{\"pad\": \"" + new string(' ', random.Next(1900, 2200)) + "\", \"temp\": 1}";

        var builder = new StringBuilder("{");
        var count = random.Next(0, 7);
        for (var i = 0; i < count; i++)
        {
            if (i > 0)
                builder.Append(',');
            builder.Append('"').Append(s_fields[random.Next(s_fields.Length)]).Append("\":");
            AppendValue(builder, random, depth: 1);
        }

        return builder.Append('}').ToString();
    }

    private static void AppendValue(StringBuilder builder, Random random, int depth)
    {
        var kind = random.Next(10);
        if (kind == 0 && depth < 12)
        {
            builder.Append('[');
            for (var i = random.Next(0, 3); i > 0; i--)
            {
                AppendValue(builder, random, depth + 1);
                if (i > 1)
                    builder.Append(',');
            }

            builder.Append(']');
        }
        else if (kind == 1 && depth < 12)
        {
            builder.Append("{\"k\":");
            AppendValue(builder, random, depth + 1);
            builder.Append('}');
        }
        else
            builder.Append(s_scalars[random.Next(s_scalars.Length)]);
    }

    private static string Show(byte[] payload) =>
        $"[{payload.Length} bytes] {Encoding.UTF8.GetString(payload[..Math.Min(payload.Length, 300)])} ({Convert.ToHexString(payload[..Math.Min(payload.Length, 64)])})";
}
