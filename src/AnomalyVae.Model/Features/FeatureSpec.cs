using System.Text;
using System.Text.Json;

namespace AnomalyVae.Model;

/// <summary>One column the model uses, as the user (or <see cref="SpecInference"/>) declared it.</summary>
/// <param name="Name">CSV column / event field name (exact, case-sensitive).</param>
/// <param name="Kind">How the column is modelled.</param>
/// <param name="Log">Numeric only: model sign(x)·log(1+|x|) instead of x (for heavy right tails).</param>
/// <param name="QuantileMap">
/// Numeric only: blend a rank-Gauss map of the column into its standardized value (<see cref="Model.QuantileMap"/>;
/// opt-in, docs/quality.md).
/// </param>
public sealed record FeatureDefinition(string Name, FeatureKind Kind, bool Log = false, bool QuantileMap = false);

/// <summary>
/// The user-editable feature spec: which columns are features, of which kind, and which are ignored (JSON form:
/// docs/cli.md#feature-spec). Parsing tolerates // comments and trailing commas (people edit it by hand) but rejects
/// unknown properties, so that a typo such as "lgo" is reported instead of silently ignored.
/// </summary>
public sealed class FeatureSpec
{
    private static readonly JsonDocumentOptions s_documentOptions = new()
    {
        CommentHandling = JsonCommentHandling.Skip,
        AllowTrailingCommas = true,
    };

    private readonly FeatureDefinition[] _features;
    private readonly string[] _ignore;

    /// <summary>Creates a spec and checks it.</summary>
    /// <exception cref="FeatureSpecException">Empty feature list, duplicate or blank names, log on a non-numeric feature.</exception>
    public FeatureSpec(IEnumerable<FeatureDefinition> features, IEnumerable<string>? ignore = null)
    {
        ArgumentNullException.ThrowIfNull(features);
        _features = [.. features];
        _ignore = ignore is null ? [] : [.. ignore];
        var problems = new List<string>();
        Check(_features, _ignore, problems);
        if (problems.Count > 0)
            throw new FeatureSpecException(problems);
    }

    /// <summary>Features in model order.</summary>
    public IReadOnlyList<FeatureDefinition> Features => _features;

    /// <summary>Columns deliberately left out (labels, ids, timestamps); informational, they may be absent from a file.</summary>
    public IReadOnlyList<string> Ignore => _ignore;

    /// <summary>This spec with <see cref="FeatureDefinition.QuantileMap"/> set on every numeric feature (<c>train --quantile-map</c>).</summary>
    public FeatureSpec WithQuantileMaps() =>
        new(_features.Select(f => f.Kind == FeatureKind.Numeric ? f with { QuantileMap = true } : f), _ignore);

    /// <summary>Reads a spec file.</summary>
    /// <exception cref="FeatureSpecException">Malformed JSON or an invalid spec; the message names the file.</exception>
    public static FeatureSpec Load(string path)
    {
        var json = File.ReadAllText(path);
        try
        {
            return Parse(json);
        }
        catch (FeatureSpecException e)
        {
            throw new FeatureSpecException([.. e.Problems.Select(p => $"{path}: {p}")], e);
        }
    }

    /// <summary>Parses the JSON form.</summary>
    /// <exception cref="FeatureSpecException">Every problem found: JSON syntax (with line), unknown property, unknown
    /// kind, duplicate names, empty feature list.</exception>
    public static FeatureSpec Parse(string json)
    {
        ArgumentNullException.ThrowIfNull(json);
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(json, s_documentOptions);
        }
        catch (JsonException e)
        {
            throw new FeatureSpecException($"not valid JSON (line {e.LineNumber + 1}): {e.Message}", e);
        }

        using (document)
        {
            var problems = new List<string>();
            var features = new List<FeatureDefinition>();
            var ignore = new List<string>();
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw new FeatureSpecException("the spec must be a JSON object with a \"features\" array");

            var sawFeatures = false;
            foreach (var property in root.EnumerateObject())
            {
                switch (property.Name)
                {
                    case "features":
                        sawFeatures = true;
                        ReadFeatures(property.Value, features, problems);
                        break;
                    case "ignore":
                        ReadIgnore(property.Value, ignore, problems);
                        break;
                    case "$schema":
                        if (property.Value.ValueKind != JsonValueKind.String)
                            problems.Add("\"$schema\" must be a string");
                        break;
                    default:
                        problems.Add($"unknown property \"{property.Name}\" (expected \"features\" and optionally \"ignore\")");
                        break;
                }
            }

            if (!sawFeatures)
                problems.Add("missing \"features\": list at least one feature");
            else
                Check(features, ignore, problems);

            if (problems.Count > 0)
                throw new FeatureSpecException(problems);
            return new FeatureSpec(features, ignore);
        }
    }

    /// <summary>The JSON form: camelCase, kinds as lowercase strings, "log" written for numeric features only.</summary>
    public string ToJson()
    {
        using var stream = new MemoryStream();
        using (var writer = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            writer.WriteStartObject();
            writer.WriteStartArray("features");
            foreach (var feature in _features)
            {
                writer.WriteStartObject();
                writer.WriteString("name", feature.Name);
                writer.WriteString("kind", KindName(feature.Kind));
                if (feature.Kind == FeatureKind.Numeric)
                    writer.WriteBoolean("log", feature.Log);
                if (feature.QuantileMap)
                    writer.WriteBoolean("quantileMap", true);
                writer.WriteEndObject();
            }

            writer.WriteEndArray();
            writer.WriteStartArray("ignore");
            foreach (var column in _ignore)
                writer.WriteStringValue(column);
            writer.WriteEndArray();
            writer.WriteEndObject();
        }

        return Encoding.UTF8.GetString(stream.ToArray());
    }

    /// <summary>Writes the JSON form to <paramref name="path"/>.</summary>
    public void Save(string path) => File.WriteAllText(path, ToJson() + "\n");

    /// <summary>
    /// Maps each feature to its column index in a CSV <paramref name="header"/>.
    /// </summary>
    /// <exception cref="FeatureSpecException">Names every feature column missing from the header.</exception>
    public int[] ResolveColumns(IReadOnlyList<string> header)
    {
        ArgumentNullException.ThrowIfNull(header);
        var index = new Dictionary<string, int>(StringComparer.Ordinal);
        for (var i = 0; i < header.Count; i++)
            index.TryAdd(header[i], i);

        var columns = new int[_features.Length];
        var problems = new List<string>();
        for (var f = 0; f < _features.Length; f++)
        {
            if (index.TryGetValue(_features[f].Name, out var column))
            {
                columns[f] = column;
                continue;
            }

            var hint = header.FirstOrDefault(h => string.Equals(h, _features[f].Name, StringComparison.OrdinalIgnoreCase));
            problems.Add(hint is null
                ? $"feature column '{_features[f].Name}' is not in the CSV header"
                : $"feature column '{_features[f].Name}' is not in the CSV header (names are case-sensitive; the header has '{hint}')");
        }

        if (problems.Count > 0)
        {
            problems.Add($"the header has: {string.Join(", ", header)}");
            throw new FeatureSpecException(problems);
        }

        return columns;
    }

    /// <summary>The JSON spelling of a kind ("numeric", "categorical", "binary").</summary>
    public static string KindName(FeatureKind kind) => kind switch
    {
        FeatureKind.Numeric => "numeric",
        FeatureKind.Categorical => "categorical",
        FeatureKind.Binary => "binary",
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "unknown feature kind"),
    };

    /// <summary>Parses the JSON spelling of a kind.</summary>
    public static bool TryParseKind(string? text, out FeatureKind kind)
    {
        switch (text)
        {
            case "numeric":
                kind = FeatureKind.Numeric;
                return true;
            case "categorical":
                kind = FeatureKind.Categorical;
                return true;
            case "binary":
                kind = FeatureKind.Binary;
                return true;
            default:
                kind = default;
                return false;
        }
    }

    private static void ReadFeatures(JsonElement array, List<FeatureDefinition> features, List<string> problems)
    {
        if (array.ValueKind != JsonValueKind.Array)
        {
            problems.Add("\"features\" must be an array of {\"name\", \"kind\"} objects");
            return;
        }

        var i = 0;
        foreach (var item in array.EnumerateArray())
        {
            var at = $"features[{i++}]";
            if (item.ValueKind != JsonValueKind.Object)
            {
                problems.Add($"{at}: must be an object like {{\"name\": \"temp\", \"kind\": \"numeric\"}}");
                continue;
            }

            string? name = null;
            string? kindText = null;
            bool? log = null;
            bool? quantileMap = null;
            var ok = true;
            foreach (var property in item.EnumerateObject())
            {
                switch (property.Name)
                {
                    case "name" when property.Value.ValueKind == JsonValueKind.String:
                        name = property.Value.GetString();
                        break;
                    case "kind" when property.Value.ValueKind == JsonValueKind.String:
                        kindText = property.Value.GetString();
                        break;
                    case "log" when property.Value.ValueKind is JsonValueKind.True or JsonValueKind.False:
                        log = property.Value.GetBoolean();
                        break;
                    case "quantileMap" when property.Value.ValueKind is JsonValueKind.True or JsonValueKind.False:
                        quantileMap = property.Value.GetBoolean();
                        break;
                    case "name" or "kind":
                        problems.Add($"{at}: \"{property.Name}\" must be a string");
                        ok = false;
                        break;
                    case "log" or "quantileMap":
                        problems.Add($"{at}: \"{property.Name}\" must be true or false");
                        ok = false;
                        break;
                    default:
                        problems.Add($"{at}: unknown property \"{property.Name}\" (expected \"name\", \"kind\" and for numeric features \"log\" and \"quantileMap\")");
                        ok = false;
                        break;
                }
            }

            var label = name is null ? at : $"{at} ('{name}')";
            if (name is null && ok)
            {
                problems.Add($"{at}: missing \"name\"");
                ok = false;
            }

            FeatureKind kind = default;
            if (kindText is null)
            {
                if (ok)
                    problems.Add($"{label}: missing \"kind\" (numeric, categorical or binary)");
                ok = false;
            }
            else if (!TryParseKind(kindText, out kind))
            {
                problems.Add($"{label}: unknown kind \"{kindText}\" (expected numeric, categorical or binary)");
                ok = false;
            }

            if (ok)
                features.Add(new FeatureDefinition(name!, kind, log ?? false, quantileMap ?? false));
        }
    }

    private static void ReadIgnore(JsonElement array, List<string> ignore, List<string> problems)
    {
        if (array.ValueKind != JsonValueKind.Array)
        {
            problems.Add("\"ignore\" must be an array of column names");
            return;
        }

        var i = 0;
        foreach (var item in array.EnumerateArray())
        {
            if (item.ValueKind == JsonValueKind.String)
                ignore.Add(item.GetString()!);
            else
                problems.Add($"ignore[{i}]: must be a column name (string)");
            i++;
        }
    }

    private static void Check(IReadOnlyList<FeatureDefinition> features, IReadOnlyList<string> ignore, List<string> problems)
    {
        if (features.Count == 0)
            problems.Add("the feature list is empty: a model needs at least one feature");

        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var feature in features)
        {
            ArgumentNullException.ThrowIfNull(feature, nameof(features));
            if (!CheckName(feature.Name, "feature", problems))
                continue;
            if (!Enum.IsDefined(feature.Kind))
            {
                problems.Add($"feature '{feature.Name}': unknown kind {(int)feature.Kind}");
                continue;
            }

            if (feature.Log && feature.Kind != FeatureKind.Numeric)
                problems.Add($"feature '{feature.Name}': \"log\" applies only to numeric features, not {KindName(feature.Kind)}");
            if (feature.QuantileMap && feature.Kind != FeatureKind.Numeric)
                problems.Add($"feature '{feature.Name}': \"quantileMap\" applies only to numeric features, not {KindName(feature.Kind)}");
            if (!seen.Add(feature.Name))
                problems.Add($"duplicate feature name '{feature.Name}': each column can be a feature once");
        }

        var ignored = new HashSet<string>(StringComparer.Ordinal);
        foreach (var column in ignore)
        {
            if (!CheckName(column, "ignored column", problems))
                continue;
            if (!ignored.Add(column))
                problems.Add($"column '{column}' is listed twice in \"ignore\"");
            else if (seen.Contains(column))
                problems.Add($"column '{column}' is both a feature and ignored");
        }
    }

    private static bool CheckName(string? name, string what, List<string> problems)
    {
        if (string.IsNullOrWhiteSpace(name))
        {
            problems.Add($"a {what} has an empty name");
            return false;
        }

        if (name.Trim().Length != name.Length)
        {
            problems.Add($"{what} '{name}': the name has leading or trailing spaces (CSV header names are trimmed)");
            return false;
        }

        return true;
    }
}
