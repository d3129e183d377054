using System.Text.Json;

namespace AnomalyVae.Model;

/// <summary>
/// What a windowed model reads per event: the last <see cref="Steps"/> events of the same entity (this one last),
/// each with the schema's features, ordered by <see cref="OrderField"/> (event time) or, when it is null, by
/// arrival (row) order. Stored in the model file's metadata (<see cref="ModelFileMetadata.WindowKey"/>); a model
/// without one scores each event alone.
/// </summary>
/// <param name="Steps">W, the events per window (2..<see cref="MaxSteps"/>).</param>
/// <param name="EntityField">The column / event field naming the entity (a machine, a KPI).</param>
/// <param name="OrderField">The column that orders an entity's events in a CSV (null: row order). serve orders by arrival.</param>
public sealed record WindowDefinition(int Steps, string EntityField, string? OrderField = null)
{
    /// <summary>Upper bound on W: the encoder input grows with W·F, and serve keeps W−1 rows per entity.</summary>
    public const int MaxSteps = 128;

    /// <summary>
    /// The default W: 8 events. Measured on the generated sensor fleet (docs/concepts.md, "Windows"): 8 caught the
    /// temporal faults as well as 16 did and better than 4, at half the input width; shorter entities get
    /// min(8, a quarter of the median events per entity), at least 2, so most windows are full.
    /// </summary>
    public const int DefaultSteps = 8;

    /// <summary>
    /// Share of window steps marked missing at random in each training step (Donut's missing-data injection), so
    /// the model has seen windows with gaps in their history: the gaps that <see cref="MaskFlaggedHistory"/> makes.
    /// </summary>
    public const float DefaultMissingInjection = 0.1f;

    /// <summary>
    /// Whether an event whose window holds flagged history steps is also scored with those steps missing, keeping
    /// the lower score (Donut treats known anomalies as missing): one bad reading then does not spoil the scores of
    /// the W−1 events after it. An event is flagged when its score is above the threshold (<see cref="FlaggedHistory"/>),
    /// so scores depend on earlier flags of the same entity and are computed in per-entity order. Set by the trainer;
    /// false for models written before the rule (they score with the whole history).
    /// </summary>
    public bool MaskFlaggedHistory { get; init; }

    private static readonly JsonSerializerOptions s_json = new() { PropertyNamingPolicy = JsonNamingPolicy.CamelCase };

    /// <summary>Checks the definition; every problem is named.</summary>
    /// <exception cref="FeatureSpecException">W out of range or the entity field empty.</exception>
    public WindowDefinition Validate()
    {
        var problems = new List<string>();
        if (Steps is < 2 or > MaxSteps)
            problems.Add($"The window needs between 2 and {MaxSteps} steps; it has {Steps}.");
        if (string.IsNullOrWhiteSpace(EntityField))
            problems.Add("A window needs an entity field (the column or event field naming whose history it is).");
        if (OrderField is not null && string.IsNullOrWhiteSpace(OrderField))
            problems.Add("The window's order field is empty; leave it out to use arrival order.");
        if (OrderField is not null && OrderField == EntityField)
            problems.Add($"The window's order field and entity field are both '{EntityField}'.");
        return problems.Count == 0 ? this : throw new FeatureSpecException(problems);
    }

    /// <summary>The columns a CSV must hold besides the features (entity, then order when set).</summary>
    public IReadOnlyList<string> Columns => OrderField is null ? [EntityField] : [EntityField, OrderField];

    /// <summary>W from the data when the user gives none: <see cref="DefaultSteps"/>, capped at a quarter of the median events per entity, at least 2.</summary>
    public static int DefaultStepsFor(IReadOnlyList<string> entities)
    {
        ArgumentNullException.ThrowIfNull(entities);
        var counts = entities.GroupBy(e => e, StringComparer.Ordinal).Select(g => g.Count()).Order().ToArray();
        if (counts.Length == 0)
            return DefaultSteps;
        int median = counts[counts.Length / 2];
        return Math.Clamp(median / 4, 2, DefaultSteps);
    }

    public string ToJson() => JsonSerializer.Serialize(this, s_json);

    /// <exception cref="FormatException">Not a window definition.</exception>
    public static WindowDefinition FromJson(string json)
    {
        WindowDefinition? window;
        try
        {
            window = JsonSerializer.Deserialize<WindowDefinition>(json, s_json);
        }
        catch (JsonException e)
        {
            throw new FormatException($"the window definition is not valid JSON: {e.Message}", e);
        }
        if (window is null)
            throw new FormatException("the window definition is empty");
        try
        {
            return window.Validate();
        }
        catch (FeatureSpecException e)
        {
            throw new FormatException(e.Message, e);
        }
    }
}
