using System.Globalization;
using System.Text;
using System.Text.Json;
using AnomalyVae.Events;
using AnomalyVae.Inference;
using AnomalyVae.Model;
using Npgsql;

namespace AnomalyVae.Retraining;

/// <summary>A labelled anomaly's event (with its window history for a windowed detector, migration 0010):
/// <see cref="IsTruePositive"/> is its latest label.</summary>
public sealed record LabelledEvent(SampleEvent Sample, bool IsTruePositive)
{
    public byte[] Event => Sample.Event;
}

/// <summary>
/// A row of training_sample or recent_events: the event and, for a windowed detector, the earlier steps its window
/// held when serve scored it (oldest first, as event objects) and whether each was flagged (null when serve did not
/// record flags: the model does not mask flagged history). <see cref="History"/> is null for rows of per-event
/// detectors and rows written before migration 0010.
/// </summary>
public sealed record SampleEvent(byte[] Event, IReadOnlyList<byte[]>? History = null, IReadOnlyList<bool>? HistoryFlagged = null)
{
    /// <summary>Reads the jsonb of training_sample.history / recent_events.history ({"steps": [...], "flagged": [...]}).</summary>
    /// <exception cref="JsonException">Not such an object.</exception>
    public static SampleEvent From(byte[] payload, string? history)
    {
        if (history is null)
            return new SampleEvent(payload);
        using var document = JsonDocument.Parse(history);
        var root = document.RootElement;
        if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("steps", out var steps) || steps.ValueKind != JsonValueKind.Array)
            throw new JsonException("a window history is an object with a \"steps\" array");
        var events = steps.EnumerateArray().Select(e => Encoding.UTF8.GetBytes(e.GetRawText())).ToArray();
        bool[]? flagged = null;
        if (root.TryGetProperty("flagged", out var flags) && flags.ValueKind == JsonValueKind.Array)
        {
            flagged = [.. flags.EnumerateArray().Select(e => e.ValueKind == JsonValueKind.True)];
            if (flagged.Length != events.Length)
                throw new JsonException($"a window history has {events.Length} steps and {flagged.Length} flags");
        }
        return new SampleEvent(payload, events, flagged);
    }
}

/// <summary>
/// Events decoded with one model's schema: raw input rows and which events decoded. For a windowed model
/// (<see cref="Steps"/> = W &gt; 1) each row is the event's window, [W, F] step-major with the event at step W−1, and
/// <see cref="Flags"/> holds whether each history step was flagged ([W−1] per row, all false when unknown).
/// </summary>
internal sealed record DecodedEvents(float[] X, float[] Mask, bool[] Decoded, int FeatureCount, int Steps = 1, bool[]? Flags = null)
{
    /// <summary>Values per row: W·F.</summary>
    public int Width => Steps * FeatureCount;

    /// <summary>The event's own values of row <paramref name="row"/> (the window's last step).</summary>
    public ReadOnlySpan<float> EventX(int row) => X.AsSpan((row * Width) + Width - FeatureCount, FeatureCount);

    /// <summary>The event's own mask of row <paramref name="row"/>.</summary>
    public ReadOnlySpan<float> EventMask(int row) => Mask.AsSpan((row * Width) + Width - FeatureCount, FeatureCount);

    /// <summary>
    /// Scores of rows <paramref name="rows"/> through ONNX Runtime, as serve scores them: per-event rows as a table;
    /// windows whole and, when the model masks flagged history, again with the flagged steps masked, keeping the
    /// lower score (<see cref="FlaggedHistory"/>; the flags are those serve recorded).
    /// </summary>
    public float[] Score(ModelBundle bundle, IReadOnlyList<int> rows, CancellationToken cancellationToken)
    {
        if (Steps == 1)
            return RetrainingData.Score(bundle, Table(bundle.Schema, rows), cancellationToken);
        if (bundle.InputWidth != Width)
            throw new ArgumentException($"windows of {Width} values cannot be scored by a model of input width {bundle.InputWidth}");
        var scores = new float[rows.Count];
        if (rows.Count == 0)
            return scores;
        int w = Width, h = Steps - 1;
        using var scorer = bundle.CreateScorer(Math.Min(1024, rows.Count));
        for (int first = 0; first < rows.Count; first += scorer.MaxRows)
        {
            cancellationToken.ThrowIfCancellationRequested();
            int n = Math.Min(scorer.MaxRows, rows.Count - first);
            for (int i = 0; i < n; i++)
            {
                X.AsSpan(rows[first + i] * w, w).CopyTo(scorer.X.Slice(i * w, w));
                Mask.AsSpan(rows[first + i] * w, w).CopyTo(scorer.Mask.Slice(i * w, w));
            }
            scorer.Run(n);
            scorer.Scores(n).CopyTo(scores.AsSpan(first));
        }
        if (bundle.Window is not { MaskFlaggedHistory: true } || Flags is null)
            return scores;
        var affected = Enumerable.Range(0, rows.Count).Where(i => Flags.AsSpan(rows[i] * h, h).Contains(true)).ToList();
        for (int first = 0; first < affected.Count; first += scorer.MaxRows)
        {
            int n = Math.Min(scorer.MaxRows, affected.Count - first);
            for (int i = 0; i < n; i++)
            {
                int row = rows[affected[first + i]];
                var x = scorer.X.Slice(i * w, w);
                var mask = scorer.Mask.Slice(i * w, w);
                X.AsSpan(row * w, w).CopyTo(x);
                Mask.AsSpan(row * w, w).CopyTo(mask);
                FlaggedHistory.Apply(x, mask, Flags.AsSpan(row * h, h), FeatureCount);
            }
            scorer.Run(n);
            var masked = scorer.Scores(n);
            for (int i = 0; i < n; i++)
            {
                int k = affected[first + i];
                if (FlaggedHistory.PrefersMasked(scores[k], masked[i]))
                    scores[k] = masked[i];
            }
        }
        return scores;
    }

    /// <summary>The rows <paramref name="rows"/> as a table of <paramref name="schema"/> (per-event rows only).</summary>
    public FeatureTable Table(FeatureSchema schema, IReadOnlyList<int> rows)
    {
        if (Steps != 1)
            throw new InvalidOperationException("windows are not a table of events: score them with Score");
        int f = FeatureCount;
        var x = new float[rows.Count * f];
        var mask = new float[rows.Count * f];
        for (int i = 0; i < rows.Count; i++)
        {
            X.AsSpan(rows[i] * f, f).CopyTo(x.AsSpan(i * f));
            Mask.AsSpan(rows[i] * f, f).CopyTo(mask.AsSpan(i * f));
        }
        return new FeatureTable(schema, x, mask);
    }
}

/// <summary>
/// What retraining and recalibration read from PostgreSQL (the tables of migration 0006 plus anomalies and their
/// feedback), and how events become model input. Events are the JSON objects serve stored.
/// </summary>
internal static class RetrainingData
{
    /// <summary>The latest label of an anomaly (labels are never overwritten; the newest one counts).</summary>
    private const string LatestLabel =
        "(SELECT f.label FROM anomaly_feedback f WHERE f.anomaly_id = a.id ORDER BY f.created_at DESC, f.id DESC LIMIT 1)";

    /// <summary>Events of the training sample, without those of anomalies whose latest label is true_positive; with
    /// <paramref name="within"/>, only those sampled within that time before now (the database's clock, which wrote
    /// sampled_at).</summary>
    public static Task<List<SampleEvent>> TrainingSampleAsync(NpgsqlConnection connection, string detector, CancellationToken cancellationToken,
        TimeSpan? within = null) =>
        EventsAsync(connection,
            $"""
            SELECT s.event::text, s.history::text FROM training_sample s
            WHERE s.detector = $1 AND ($2::interval IS NULL OR s.sampled_at >= now() - $2::interval) AND NOT EXISTS (
              SELECT 1 FROM anomalies a
              WHERE a.detector = s.detector AND a.topic = s.topic AND a."partition" = s.partition AND a."offset" = s."offset"
                AND {LatestLabel} = 'true_positive')
            ORDER BY s.slot
            """, detector, cancellationToken, within);

    /// <summary>Events of the recent-events ring, without those of anomalies whose latest label is true_positive
    /// when <paramref name="withoutTruePositives"/>.</summary>
    public static Task<List<SampleEvent>> RecentEventsAsync(NpgsqlConnection connection, string detector, bool withoutTruePositives, CancellationToken cancellationToken) =>
        EventsAsync(connection,
            $"""
            SELECT r.event::text, r.history::text FROM recent_events r
            WHERE r.detector = $1 AND ({(withoutTruePositives ? "false" : "true")} OR NOT EXISTS (
              SELECT 1 FROM anomalies a
              WHERE a.detector = r.detector AND a.topic = r.topic AND a."partition" = r.partition AND a."offset" = r."offset"
                AND {LatestLabel} = 'true_positive'))
            ORDER BY r.slot
            """, detector, cancellationToken);

    /// <summary>Events of the detector's labelled anomalies with their latest label, oldest anomaly first.</summary>
    public static async Task<List<LabelledEvent>> LabelledAsync(NpgsqlConnection connection, string detector, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(
            $"""
            SELECT event::text, label, history::text FROM (SELECT a.id, a.event, a.history, {LatestLabel} AS label FROM anomalies a WHERE a.detector = $1) labelled
            WHERE label IS NOT NULL ORDER BY id
            """, connection);
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = detector });
        var events = new List<LabelledEvent>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
            events.Add(new LabelledEvent(SampleEvent.From(EventJson.FromJsonb(reader.GetString(0)), reader.IsDBNull(2) ? null : reader.GetString(2)),
                reader.GetString(1) == "true_positive"));
        return events;
    }

    private static async Task<List<SampleEvent>> EventsAsync(NpgsqlConnection connection, string sql, string detector, CancellationToken cancellationToken,
        TimeSpan? within = null)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = detector });
        if (sql.Contains("$2", StringComparison.Ordinal))
            command.Parameters.Add(new NpgsqlParameter { Value = within is { } w ? w : DBNull.Value, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Interval });
        var events = new List<SampleEvent>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
            events.Add(SampleEvent.From(EventJson.FromJsonb(reader.GetString(0)), reader.IsDBNull(1) ? null : reader.GetString(1)));
        return events;
    }

    /// <summary>
    /// Decodes events as serve does (<see cref="EventDecoder"/>). An event that does not decode, or has none of the
    /// features present, is marked not decoded.
    /// </summary>
    public static DecodedEvents Decode(FeatureSchema schema, IReadOnlyList<byte[]> events)
    {
        var decoder = new EventDecoder(schema);
        int f = schema.Count;
        var x = new float[events.Count * f];
        var mask = new float[events.Count * f];
        var decoded = new bool[events.Count];
        for (int i = 0; i < events.Count; i++)
        {
            var result = decoder.Decode(events[i], x.AsSpan(i * f, f), mask.AsSpan(i * f, f));
            decoded[i] = result.IsSuccess && result.PresentFeatures > 0;
            if (!decoded[i])
            {
                x.AsSpan(i * f, f).Clear();
                mask.AsSpan(i * f, f).Clear();
            }
        }
        return new DecodedEvents(x, mask, decoded, f);
    }

    /// <summary>
    /// Decodes sample rows for <paramref name="schema"/>'s model: each event alone when <paramref name="window"/> is
    /// null, else its window (history + event; see <see cref="DecodeWindows"/>).
    /// </summary>
    public static DecodedEvents Decode(FeatureSchema schema, WindowDefinition? window, IReadOnlyList<SampleEvent> events) =>
        window is null ? Decode(schema, [.. events.Select(e => e.Event)]) : DecodeWindows(schema, window, events, maskFlagged: false);

    /// <summary>
    /// The windows of sample rows, [W, F] each: the event at step W−1 and its stored history before it (the newest
    /// W−1 steps when it holds more, leading steps empty when fewer, as serve's windows of an entity's first events).
    /// A row is not decoded when its event does not decode (as <see cref="Decode(FeatureSchema, IReadOnlyList{byte[]})"/>)
    /// or it has no stored history (rows written before migration 0010, or while the detector's model was per-event:
    /// their window is unknown, so windowed retraining and recalibration skip them). A history step that no longer
    /// decodes is a missing step. <paramref name="maskFlagged"/>: flagged steps are masked in place (training windows).
    /// </summary>
    public static DecodedEvents DecodeWindows(FeatureSchema schema, WindowDefinition window, IReadOnlyList<SampleEvent> events, bool maskFlagged)
    {
        var decoder = new EventDecoder(schema);
        int f = schema.Count, w = window.Steps, h = w - 1, width = w * f;
        var x = new float[events.Count * width];
        var mask = new float[events.Count * width];
        var flags = new bool[events.Count * h];
        var decoded = new bool[events.Count];
        // A row's steps decoded newest first (the event, then its history back to front); WindowAssembly lays them
        // out as CSV scoring and serve do. The decoder leaves a step it cannot read all zeros: a missing step.
        var stepX = new float[width];
        var stepMask = new float[width];
        for (int i = 0; i < events.Count; i++)
        {
            var sample = events[i];
            var result = decoder.Decode(sample.Event, stepX.AsSpan(0, f), stepMask.AsSpan(0, f));
            decoded[i] = sample.History is not null && result.IsSuccess && result.PresentFeatures > 0;
            if (!decoded[i])
                continue;
            var history = sample.History!;
            int held = Math.Min(history.Count, h);
            for (int back = 1; back <= held; back++)
            {
                int source = history.Count - back;
                decoder.Decode(history[source], stepX.AsSpan(back * f, f), stepMask.AsSpan(back * f, f));
                flags[(i * h) + h - back] = sample.HistoryFlagged?[source] ?? false;
            }
            var row = x.AsSpan(i * width, width);
            var rowMask = mask.AsSpan(i * width, width);
            var steps = new DecodedSteps(stepX, stepMask, held + 1, f);
            WindowAssembly.Fill(ref steps, w, f, row, rowMask);
            if (maskFlagged && window.MaskFlaggedHistory)
                FlaggedHistory.Apply(row, rowMask, flags.AsSpan(i * h, h), f);
        }
        return new DecodedEvents(x, mask, decoded, f, w, flags);
    }

    /// <summary>The first <paramref name="count"/> decoded steps of a row, newest first, [F] each.</summary>
    private readonly struct DecodedSteps(float[] x, float[] mask, int count, int features) : IWindowSteps
    {
        public bool TryStep(int back, out ReadOnlySpan<float> values, out ReadOnlySpan<float> present)
        {
            bool held = back < count;
            values = held ? x.AsSpan(back * features, features) : default;
            present = held ? mask.AsSpan(back * features, features) : default;
            return held;
        }
    }

    /// <summary>
    /// The training windows of decoded sample rows <paramref name="rows"/> as a table <see cref="FeatureWindows"/>
    /// reads: each window laid out as W rows of its own entity (order = step), so the window of its last row is
    /// exactly the stored window. Returns the windows and their last rows (the rows to train on).
    /// </summary>
    public static (FeatureWindows Windows, int[] Rows) TrainingWindows(FeatureSchema schema, WindowDefinition window, DecodedEvents decoded, IReadOnlyList<int> rows)
    {
        int w = decoded.Steps, width = decoded.Width;
        var x = new float[rows.Count * width];
        var mask = new float[rows.Count * width];
        var entity = new string[rows.Count * w];
        var order = new string[rows.Count * w];
        for (int i = 0; i < rows.Count; i++)
        {
            decoded.X.AsSpan(rows[i] * width, width).CopyTo(x.AsSpan(i * width));
            decoded.Mask.AsSpan(rows[i] * width, width).CopyTo(mask.AsSpan(i * width));
            for (int step = 0; step < w; step++)
            {
                entity[(i * w) + step] = i.ToString(CultureInfo.InvariantCulture);
                order[(i * w) + step] = step.ToString(CultureInfo.InvariantCulture);
            }
        }
        var extra = new Dictionary<string, string[]> { [window.EntityField] = entity };
        if (window.OrderField is not null)
            extra[window.OrderField] = order;
        var table = new FeatureTable(schema, x, mask, extraColumns: extra);
        return (new FeatureWindows(table, window), [.. Enumerable.Range(0, rows.Count).Select(i => (i * w) + w - 1)]);
    }

    /// <summary>
    /// The feature cells of events as CSV-like text, so that <see cref="FeatureSchema.Fit(FeatureSpec, IReadOnlyList{string}, IEnumerable{IReadOnlyList{string}})"/>
    /// refits a schema on them with the same reading the decoder applies: numbers by their shortest round-trip text
    /// (as the decoder looks categorical numbers up), booleans as "true"/"false" for categorical and "1"/"0" otherwise,
    /// strings as they are, absent and null as missing.
    /// </summary>
    public static IEnumerable<string[]> Cells(FeatureSpec spec, IEnumerable<byte[]> events)
    {
        foreach (var payload in events)
        {
            using var document = JsonDocument.Parse(payload);
            var cells = new string[spec.Features.Count];
            for (int f = 0; f < cells.Length; f++)
            {
                var feature = spec.Features[f];
                cells[f] = !document.RootElement.TryGetProperty(feature.Name, out var value) ? "" : value.ValueKind switch
                {
                    JsonValueKind.String => value.GetString() ?? "",
                    JsonValueKind.Number => value.GetDouble().ToString("R", CultureInfo.InvariantCulture),
                    JsonValueKind.True => feature.Kind == FeatureKind.Categorical ? "true" : "1",
                    JsonValueKind.False => feature.Kind == FeatureKind.Categorical ? "false" : "0",
                    _ => "",
                };
            }
            yield return cells;
        }
    }

    /// <summary>
    /// <paramref name="fitted"/> with the categorical and binary features of <paramref name="encoding"/> (same features
    /// in the same order): the numeric centers, scales and tail scales are refitted, the encoding of the raw input is not.
    /// </summary>
    public static FeatureSchema KeepEncoding(FeatureSchema fitted, FeatureSchema encoding) =>
        new(fitted.Features.Select((f, j) => f.Kind == FeatureKind.Numeric ? f : encoding.Features[j]));

    /// <summary>The spec a schema was fitted from: same features, kinds, log transforms and quantile-map flags.</summary>
    public static FeatureSpec SpecOf(FeatureSchema schema) =>
        new(schema.Features.Select(f => new FeatureDefinition(f.Name, f.Kind, f.Log, f.QuantileMap is not null)));

    /// <summary>Scores of a table of events through ONNX Runtime, as serve scores (the model's own file).</summary>
    public static float[] Score(ModelBundle bundle, FeatureTable table, CancellationToken cancellationToken) =>
        table.RowCount == 0 ? [] : bundle.Score(table, cancellationToken: cancellationToken).Scores;
}
