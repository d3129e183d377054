using System.Text.Json;
using AnomalyVae.Tests;
using Json.Schema;

namespace AnomalyVae.UnitTests.Model;

/// <summary>One of the repository's JSON Schemas (schemas/), evaluated by JsonSchema.Net (draft 2020-12).</summary>
internal sealed class SchemaValidator
{
    // JsonSchema.Net registers a schema under its $id once per process: build each schema text once.
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<string, Lazy<(JsonSchema Schema, Uri Id, BuildOptions Options)>> s_built = new();
    private readonly BuildOptions _options;
    private readonly Uri _id;
    private readonly JsonSchema _schema;

    public SchemaValidator(JsonElement root, string fileName = "schema.json")
    {
        var owned = root.Clone(); // the built schema keeps referring to it
        var built = s_built.GetOrAdd(owned.GetRawText(), key => new(() =>
        {
            var root = owned;
            var options = new BuildOptions();
            var id = root.TryGetProperty("$id", out var declared) && Uri.TryCreate(declared.GetString(), UriKind.Absolute, out var absolute)
                ? absolute : new Uri($"https://anomalyvae.test/schemas/{fileName}");
            var schema = JsonSchema.Build(root, options, id);
            if (!root.TryGetProperty("$id", out _))
                options.SchemaRegistry.Register(id, schema);
            return (schema, id, options);
        })).Value;
        _schema = built.Schema;
        _id = built.Id;
        _options = built.Options;
    }

    /// <summary>Reads schemas/<paramref name="fileName"/> of the repository.</summary>
    public static JsonElement LoadSchemaFile(string fileName)
    {
        using var document = JsonDocument.Parse(File.ReadAllText(RepositoryFiles.Path("schemas", fileName)));
        return document.RootElement.Clone();
    }

    public static SchemaValidator ForFile(string fileName) => new(LoadSchemaFile(fileName), fileName);

    /// <summary>Error messages (with instance paths); empty when the instance is valid. <paramref name="pointer"/>
    /// names a subschema ("#/$defs/x") to evaluate instead of the whole schema.</summary>
    public List<string> Validate(JsonElement instance, string? pointer = null)
    {
        var schema = _schema;
        if (pointer is not null)
        {
            var reference = JsonDocument.Parse(JsonSerializer.Serialize(new Dictionary<string, string> { ["$ref"] = _id + pointer })).RootElement.Clone();
            schema = JsonSchema.Build(reference, _options, new Uri(_id, $"ref-{Guid.NewGuid():N}.json"));
        }
        EvaluationResults results;
        try
        {
            results = schema.Evaluate(instance, new EvaluationOptions { OutputFormat = OutputFormat.List });
        }
        catch (FormatException)
        {
            // JsonSchema.Net 8 compares numbers as decimal: one beyond its range (1e400) throws in `enum`/`const`. Such a
            // number equals none of our enum values, so the instance is invalid.
            return [$"a number beyond decimal range in {instance.GetRawText()}"];
        }
        if (results.IsValid)
            return [];
        var errors = new List<string>();
        foreach (var detail in (IEnumerable<EvaluationResults>?)results.Details ?? [results])
        {
            foreach (var (keyword, message) in (IEnumerable<KeyValuePair<string, string>>?)detail.Errors ?? [])
                errors.Add($"{detail.InstanceLocation}: {keyword}: {message}");
        }
        return errors.Count > 0 ? errors : ["invalid"];
    }
}
