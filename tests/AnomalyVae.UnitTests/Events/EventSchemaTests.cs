using System.Text;
using System.Text.Json;
using AnomalyVae.Events;
using AnomalyVae.UnitTests.Model;

namespace AnomalyVae.UnitTests.Events;

/// <summary>schemas/event.schema.json: loadable by the strict validator, and its definitions agree with the decoder.</summary>
public class EventSchemaTests
{
    private static readonly JsonElement s_schemaJson = SchemaValidator.LoadSchemaFile("event.schema.json");
    private static readonly SchemaValidator s_schema = new(s_schemaJson, "event.schema.json");
    private static readonly EventDecoder s_decoder = new(EventDecoderTests.Schema, entityField: "machine_id", timeField: "ts");

    [Fact]
    public void SchemaIsDraft202012()
    {
        Assert.Equal("https://json-schema.org/draft/2020-12/schema", s_schemaJson.GetProperty("$schema").GetString());
        Assert.Equal(EventDecoder.MaxAbsNumericValue, s_schemaJson.GetProperty("$defs").GetProperty("numeric").GetProperty("maximum").GetDouble());
    }

    [Theory]
    [InlineData("{}", true)]
    [InlineData("""{"temp": 1, "anything": {"nested": [1, "x"]}}""", true)]
    [InlineData("[]", false)]
    [InlineData("1", false)]
    [InlineData("null", false)]
    public void AnEventIsAnObject(string json, bool valid)
    {
        using var document = JsonDocument.Parse(json);
        Assert.Equal(valid, s_schema.Validate(document.RootElement).Count == 0);
        Assert.Equal(valid, Decode(json).IsSuccess);
    }

    private static readonly string[] s_values =
    [
        "0", "1", "-1", "2", "0.5", "1.0", "21.5", "1e15", "-1e15", "1e16", "1e400", "-1e400", "1714564800000", "253402300800000",
        "true", "false", "null", "{}", "{\"a\": 1}", "[]", "[1]",
        "\"\"", "\"ok\"", "\"zzz\"", "\"NA\"", "\"n/a\"", "\"None\"", "\"NaN\"", "\"Infinity\"", "\"inf\"", "\"12.5\"", "\" -1e3 \"",
        "\".5\"", "\"1.\"", "\"12,5\"", "\"0x10\"", "\"yes\"", "\"N\"", "\"2024-05-01\"", "\"2024-05-01T12:00:00Z\"",
        "\"2024-05-01T12:00:00.123+02:00\"", "\"2024-05-01T12:00\"", "\"2024-05-01 12:00:00\"", "\"yesterday\"",
    ];

    // Where the schema cannot say what the decoder checks, with the reason.
    private static readonly HashSet<(string Field, string Value)> s_schemaLooser =
    [
        ("door", "\"ok\""), ("door", "\"zzz\""), ("door", "\"12.5\""), ("door", "\" -1e3 \""), ("door", "\".5\""), // tokens are per model
        ("door", "\"1.\""), ("door", "\"12,5\""), ("door", "\"0x10\""), ("door", "\"2024-05-01\""), ("door", "\"yesterday\""),
        ("door", "\"2024-05-01T12:00:00Z\""), ("door", "\"2024-05-01T12:00:00.123+02:00\""), ("door", "\"2024-05-01T12:00\""),
        ("door", "\"2024-05-01 12:00:00\""), ("door", "\"Infinity\""), ("door", "\"inf\""),
    ];

    [Fact]
    public void DefinitionsAgreeWithTheDecoder()
    {
        var disagreements = new List<string>();
        foreach (var field in new[] { "temp", "status", "door", "machine_id", "ts" })
        {
            foreach (var value in s_values)
            {
                var json = $$"""{"{{field}}": {{value}}}""";
                using var document = JsonDocument.Parse(json);
                var schemaValid = s_schema.Validate(document.RootElement, "#/$defs/exampleEvent").Count == 0;
                var decoded = Decode(json).IsSuccess;
                if (schemaValid == decoded)
                    continue;
                if (schemaValid && s_schemaLooser.Contains((field, value)))
                    continue;
                disagreements.Add($"{json}: schema {(schemaValid ? "accepts" : "rejects")}, decoder {(decoded ? "accepts" : "rejects")}");
            }
        }

        Assert.Empty(disagreements);
    }

    [Fact]
    public void TheListedLoosenessIsReal()
    {
        // Every exception above is a case where the schema accepts and the decoder rejects; none is stale.
        foreach (var (field, value) in s_schemaLooser)
        {
            var json = $$"""{"{{field}}": {{value}}}""";
            using var document = JsonDocument.Parse(json);
            Assert.Empty(s_schema.Validate(document.RootElement, "#/$defs/exampleEvent"));
            Assert.False(Decode(json).IsSuccess, json);
        }
    }

    private static EventDecodeResult Decode(string json) =>
        s_decoder.Decode(Encoding.UTF8.GetBytes(json), new float[s_decoder.FeatureCount], new float[s_decoder.FeatureCount]);
}
