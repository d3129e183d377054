using System.Text.Json;
using AnomalyVae.Model;

namespace AnomalyVae.UnitTests.Model;

public class FeatureSpecTests
{
    private const string Sample = """
        { "features": [ {"name": "temp", "kind": "numeric", "log": false}, {"name":"status","kind":"categorical"},
                        {"name":"door_open","kind":"binary"} ],
          "ignore": ["id","ts","label"] }
        """;

    [Fact]
    public void ParsesTheDocumentedExample()
    {
        var spec = FeatureSpec.Parse(Sample);
        Assert.Equal(
            [new FeatureDefinition("temp", FeatureKind.Numeric), new("status", FeatureKind.Categorical), new("door_open", FeatureKind.Binary)],
            spec.Features);
        Assert.Equal(["id", "ts", "label"], spec.Ignore);
    }

    [Fact]
    public void JsonRoundTripKeepsEverything()
    {
        var spec = new FeatureSpec(
            [new("bytes", FeatureKind.Numeric, Log: true), new("proto", FeatureKind.Categorical), new("syn", FeatureKind.Binary)],
            ["id"]);
        var json = spec.ToJson();
        Assert.Contains("\"kind\": \"numeric\"", json);
        Assert.Contains("\"log\": true", json);
        var back = FeatureSpec.Parse(json);
        Assert.Equal(spec.Features, back.Features);
        Assert.Equal(spec.Ignore, back.Ignore);
    }

    [Fact]
    public void UnknownKindIsNamed()
    {
        var e = Assert.Throws<FeatureSpecException>(() => FeatureSpec.Parse("""{"features":[{"name":"t","kind":"text"}]}"""));
        Assert.Contains("unknown kind \"text\"", e.Message);
        Assert.Contains("'t'", e.Message);
    }

    [Fact]
    public void DuplicateNamesAreRejected()
    {
        var e = Assert.Throws<FeatureSpecException>(() => FeatureSpec.Parse(
            """{"features":[{"name":"t","kind":"numeric"},{"name":"t","kind":"binary"}]}"""));
        Assert.Contains("duplicate feature name 't'", e.Message);
    }

    [Fact]
    public void AFeatureCannotAlsoBeIgnored()
    {
        var e = Assert.Throws<FeatureSpecException>(() => FeatureSpec.Parse(
            """{"features":[{"name":"t","kind":"numeric"}],"ignore":["t"]}"""));
        Assert.Contains("both a feature and ignored", e.Message);
    }

    [Fact]
    public void EmptyFeatureListIsRejected()
    {
        var e = Assert.Throws<FeatureSpecException>(() => FeatureSpec.Parse("""{"features":[]}"""));
        Assert.Contains("empty", e.Message);
        Assert.Throws<FeatureSpecException>(() => new FeatureSpec([]));
    }

    [Fact]
    public void AllProblemsAreReportedTogether()
    {
        var e = Assert.Throws<FeatureSpecException>(() => FeatureSpec.Parse(
            """{"features":[{"name":"a","kind":"nope"},{"name":"b","kind":"categorical","log":true},{"name":"c","kind":"numeric","lgo":true}],"extra":1}"""));
        Assert.Equal(4, e.Problems.Count);
        Assert.Contains(e.Problems, p => p.Contains("unknown kind \"nope\""));
        Assert.Contains(e.Problems, p => p.Contains("\"log\" applies only to numeric"));
        Assert.Contains(e.Problems, p => p.Contains("unknown property \"lgo\""));
        Assert.Contains(e.Problems, p => p.Contains("unknown property \"extra\""));
    }

    [Fact]
    public void MalformedJsonNamesTheLine()
    {
        var e = Assert.Throws<FeatureSpecException>(() => FeatureSpec.Parse("{\n\"features\": [\n{\"name\": \"a\" \"kind\": \"numeric\"}]}"));
        Assert.Contains("line 3", e.Message);
    }

    [Fact]
    public void CommentsAndTrailingCommasAreTolerated()
    {
        var spec = FeatureSpec.Parse("""
            {
              "$schema": "../schemas/feature-spec.schema.json",
              // hand-edited
              "features": [ {"name": "a", "kind": "numeric",}, ],
            }
            """);
        Assert.Single(spec.Features);
    }

    [Fact]
    public void MissingHeaderColumnsAreNamed()
    {
        var spec = FeatureSpec.Parse(Sample);
        var e = Assert.Throws<FeatureSpecException>(() => spec.ResolveColumns(["id", "Temp", "status"]));
        Assert.Contains(e.Problems, p => p.Contains("'temp' is not in the CSV header") && p.Contains("'Temp'"));
        Assert.Contains(e.Problems, p => p.Contains("'door_open' is not in the CSV header"));
        Assert.Equal([2, 1, 0], spec.ResolveColumns(["door_open", "status", "temp"]));
    }

    [Fact]
    public void LoadNamesTheFile()
    {
        var path = Path.GetTempFileName();
        try
        {
            File.WriteAllText(path, """{"features":[{"name":"a","kind":"nope"}]}""");
            var e = Assert.Throws<FeatureSpecException>(() => FeatureSpec.Load(path));
            Assert.Contains(path, e.Message);

            FeatureSpec.Parse(Sample).Save(path);
            Assert.Equal(3, FeatureSpec.Load(path).Features.Count);
        }
        finally
        {
            File.Delete(path);
        }
    }

    // ---- The JSON Schema file and the parser must agree. ----

    public static TheoryData<string> ValidSpecs => new()
    {
        Sample,
        """{"features":[{"name":"a","kind":"binary"}]}""",
        """{"features":[{"name":"a b","kind":"numeric","log":true}],"ignore":[]}""",
        """{"$schema":"x","features":[{"name":"a","kind":"categorical","log":false}]}""",
    };

    public static TheoryData<string> InvalidSpecs => new()
    {
        """{"features":[]}""",
        """{"ignore":["a"]}""",
        """{"features":[{"name":"a","kind":"text"}]}""",
        """{"features":[{"name":"a"}]}""",
        """{"features":[{"kind":"numeric"}]}""",
        """{"features":[{"name":"","kind":"numeric"}]}""",
        """{"features":[{"name":" a","kind":"numeric"}]}""",
        """{"features":[{"name":"a","kind":"binary","log":true}]}""",
        """{"features":[{"name":"a","kind":"numeric","log":"yes"}]}""",
        """{"features":[{"name":"a","kind":"numeric","lgo":true}]}""",
        """{"features":[{"name":"a","kind":"numeric"}],"ignore":["x","x"]}""",
        """{"features":[{"name":"a","kind":"numeric"}],"other":1}""",
        """{"features":{"name":"a","kind":"numeric"}}""",
        """[{"name":"a","kind":"numeric"}]""",
    };

    [Fact]
    public void SchemaFileIsDraft202012()
    {
        var schema = LoadSchema();
        Assert.Equal("https://json-schema.org/draft/2020-12/schema", schema.GetProperty("$schema").GetString());
        _ = new SchemaValidator(schema); // JsonSchema.Net builds it: every $ref resolves
    }

    [Theory]
    [MemberData(nameof(ValidSpecs))]
    public void ValidSpecsPassSchemaAndParser(string json)
    {
        var validator = new SchemaValidator(LoadSchema());
        using var document = JsonDocument.Parse(json);
        Assert.Empty(validator.Validate(document.RootElement));
        Assert.NotEmpty(FeatureSpec.Parse(json).Features);
    }

    [Theory]
    [MemberData(nameof(InvalidSpecs))]
    public void InvalidSpecsFailSchemaAndParser(string json)
    {
        var validator = new SchemaValidator(LoadSchema());
        using var document = JsonDocument.Parse(json);
        Assert.NotEmpty(validator.Validate(document.RootElement));
        Assert.Throws<FeatureSpecException>(() => FeatureSpec.Parse(json));
    }

    [Fact]
    public void WrittenSpecsValidateAgainstTheSchema()
    {
        var spec = new FeatureSpec(
            [new("x", FeatureKind.Numeric, true), new("c", FeatureKind.Categorical), new("b", FeatureKind.Binary)], ["label"]);
        using var document = JsonDocument.Parse(spec.ToJson());
        Assert.Empty(new SchemaValidator(LoadSchema()).Validate(document.RootElement));
    }

    internal static JsonElement LoadSchema() => SchemaValidator.LoadSchemaFile("feature-spec.schema.json");
}
