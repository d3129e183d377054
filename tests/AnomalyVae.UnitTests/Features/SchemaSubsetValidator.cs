using System.Text.Json;
using System.Text.RegularExpressions;

namespace AnomalyVae.UnitTests.Features;

/// <summary>
/// A JSON Schema (draft 2020-12) evaluator for exactly the keywords our schemas use. JsonSchema.Net cannot be
/// restored from the NuGet copy here (its dependencies JsonPointer.Net / Json.More.Net are missing), so tests use
/// this instead. It refuses any keyword it does not implement, so a schema edit that relies on an unsupported
/// keyword fails loudly rather than being silently ignored.
/// </summary>
internal sealed class SchemaSubsetValidator
{
    // contentEncoding is an annotation in 2020-12 (no assertion without the content vocabulary).
    private static readonly HashSet<string> s_annotations = ["$schema", "$id", "title", "description", "default", "examples", "$defs", "contentEncoding"];
    private static readonly HashSet<string> s_assertions =
    [
        "$ref", "type", "properties", "required", "additionalProperties", "items", "minItems", "uniqueItems",
        "enum", "const", "pattern", "if", "then", "else", "minimum", "maximum",
    ];

    private readonly JsonElement _root;

    public SchemaSubsetValidator(JsonElement root)
    {
        _root = root;
        CheckKeywords(root, "#");
    }

    /// <summary>Reads schemas/<paramref name="fileName"/> of the repository.</summary>
    public static JsonElement LoadSchemaFile(string fileName)
    {
        using var document = JsonDocument.Parse(File.ReadAllText(RepositoryFiles.Path("schemas", fileName)));
        return document.RootElement.Clone();
    }

    /// <summary>Error messages (with instance paths); empty when the instance is valid.</summary>
    public List<string> Validate(JsonElement instance)
    {
        var errors = new List<string>();
        Evaluate(_root, instance, "$", errors);
        return errors;
    }

    /// <summary>Validates against a local sub-schema such as "#/$defs/exampleEvent".</summary>
    public List<string> Validate(JsonElement instance, string reference)
    {
        var errors = new List<string>();
        Evaluate(Resolve(reference), instance, "$", errors);
        return errors;
    }

    private void CheckKeywords(JsonElement schema, string at)
    {
        if (schema.ValueKind is JsonValueKind.True or JsonValueKind.False)
            return;
        if (schema.ValueKind != JsonValueKind.Object)
            throw new NotSupportedException($"{at}: a schema must be an object or a boolean");
        foreach (var keyword in schema.EnumerateObject())
        {
            if (!s_annotations.Contains(keyword.Name) && !s_assertions.Contains(keyword.Name))
                throw new NotSupportedException($"{at}: keyword '{keyword.Name}' is not implemented by the test validator");
            switch (keyword.Name)
            {
                case "properties" or "$defs":
                    foreach (var child in keyword.Value.EnumerateObject())
                        CheckKeywords(child.Value, $"{at}/{keyword.Name}/{child.Name}");
                    break;
                case "items" or "additionalProperties" or "if" or "then" or "else":
                    CheckKeywords(keyword.Value, $"{at}/{keyword.Name}");
                    break;
                case "$ref":
                    Resolve(keyword.Value.GetString()!);
                    break;
            }
        }
    }

    private JsonElement Resolve(string reference)
    {
        if (!reference.StartsWith("#/", StringComparison.Ordinal))
            throw new NotSupportedException($"only local $ref are implemented, not '{reference}'");
        var node = _root;
        foreach (var part in reference[2..].Split('/'))
        {
            if (!node.TryGetProperty(part, out node))
                throw new InvalidOperationException($"$ref '{reference}' does not resolve");
        }

        return node;
    }

    private void Evaluate(JsonElement schema, JsonElement instance, string path, List<string> errors)
    {
        if (schema.ValueKind == JsonValueKind.True)
            return;
        if (schema.ValueKind == JsonValueKind.False)
        {
            errors.Add($"{path}: no value is allowed here");
            return;
        }

        foreach (var keyword in schema.EnumerateObject())
        {
            var value = keyword.Value;
            switch (keyword.Name)
            {
                case "$ref":
                    Evaluate(Resolve(value.GetString()!), instance, path, errors);
                    break;
                case "type":
                    var types = value.ValueKind == JsonValueKind.Array ? value.EnumerateArray().Select(t => t.GetString()!).ToArray() : [value.GetString()!];
                    if (!types.Any(t => HasType(instance, t)))
                        errors.Add($"{path}: expected {string.Join(" or ", types)}, got {instance.ValueKind}");
                    break;
                case "properties" when instance.ValueKind == JsonValueKind.Object:
                    foreach (var property in value.EnumerateObject())
                    {
                        if (instance.TryGetProperty(property.Name, out var child))
                            Evaluate(property.Value, child, $"{path}.{property.Name}", errors);
                    }

                    break;
                case "required" when instance.ValueKind == JsonValueKind.Object:
                    foreach (var name in value.EnumerateArray())
                    {
                        if (!instance.TryGetProperty(name.GetString()!, out _))
                            errors.Add($"{path}: missing required property '{name.GetString()}'");
                    }

                    break;
                case "additionalProperties" when instance.ValueKind == JsonValueKind.Object:
                    var declared = schema.TryGetProperty("properties", out var props)
                        ? props.EnumerateObject().Select(p => p.Name).ToHashSet()
                        : [];
                    foreach (var property in instance.EnumerateObject().Where(p => !declared.Contains(p.Name)))
                        Evaluate(value, property.Value, $"{path}.{property.Name}", errors);
                    break;
                case "items" when instance.ValueKind == JsonValueKind.Array:
                    var i = 0;
                    foreach (var item in instance.EnumerateArray())
                        Evaluate(value, item, $"{path}[{i++}]", errors);
                    break;
                case "minItems" when instance.ValueKind == JsonValueKind.Array:
                    if (instance.GetArrayLength() < value.GetInt32())
                        errors.Add($"{path}: fewer than {value.GetInt32()} items");
                    break;
                case "uniqueItems" when instance.ValueKind == JsonValueKind.Array && value.GetBoolean():
                    var items = instance.EnumerateArray().ToList();
                    for (var a = 0; a < items.Count; a++)
                    {
                        for (var b = a + 1; b < items.Count; b++)
                        {
                            if (JsonElement.DeepEquals(items[a], items[b]))
                                errors.Add($"{path}: items {a} and {b} are equal");
                        }
                    }

                    break;
                case "enum":
                    if (!value.EnumerateArray().Any(option => JsonElement.DeepEquals(option, instance)))
                        errors.Add($"{path}: {instance.GetRawText()} is not one of {value.GetRawText()}");
                    break;
                case "const":
                    if (!JsonElement.DeepEquals(value, instance))
                        errors.Add($"{path}: must be {value.GetRawText()}");
                    break;
                case "minimum" when instance.ValueKind == JsonValueKind.Number:
                    if (instance.GetDouble() < value.GetDouble())
                        errors.Add($"{path}: {instance.GetRawText()} is below the minimum {value.GetRawText()}");
                    break;
                case "maximum" when instance.ValueKind == JsonValueKind.Number:
                    if (instance.GetDouble() > value.GetDouble())
                        errors.Add($"{path}: {instance.GetRawText()} is above the maximum {value.GetRawText()}");
                    break;
                case "pattern" when instance.ValueKind == JsonValueKind.String:
                    if (!Regex.IsMatch(instance.GetString()!, value.GetString()!, RegexOptions.ECMAScript))
                        errors.Add($"{path}: '{instance.GetString()}' does not match {value.GetString()}");
                    break;
                case "if":
                    var conditionErrors = new List<string>();
                    Evaluate(value, instance, path, conditionErrors);
                    var branch = conditionErrors.Count == 0 ? "then" : "else";
                    if (schema.TryGetProperty(branch, out var branchSchema))
                        Evaluate(branchSchema, instance, path, errors);
                    break;
            }
        }
    }

    private static bool HasType(JsonElement instance, string type) => type switch
    {
        "object" => instance.ValueKind == JsonValueKind.Object,
        "array" => instance.ValueKind == JsonValueKind.Array,
        "string" => instance.ValueKind == JsonValueKind.String,
        "boolean" => instance.ValueKind is JsonValueKind.True or JsonValueKind.False,
        "null" => instance.ValueKind == JsonValueKind.Null,
        "number" => instance.ValueKind == JsonValueKind.Number,
        "integer" => instance.ValueKind == JsonValueKind.Number && instance.GetDouble() == Math.Floor(instance.GetDouble()),
        _ => throw new NotSupportedException($"unknown type '{type}'"),
    };
}
