using System.Globalization;

namespace AnomalyVae.Model;

/// <summary>
/// The windows of a table's rows: for each row, the previous rows of the same entity in order (by the window's
/// order column, ties and no column by row order). Rows stay in input order, so results come back in input order
/// whatever order the CSV holds them in. A window is [W, F] step-major, the row itself at step W−1; steps before an
/// entity's first row have mask 0 (and value 0), as do missing values.
/// </summary>
public sealed class FeatureWindows
{
    private readonly int[] _previous;
    private readonly int[] _occurrence;
    private readonly List<List<int>> _sequences;

    /// <exception cref="CsvFormatException">A row has no entity, or an order value that is neither a number nor a time.</exception>
    public FeatureWindows(FeatureTable table, WindowDefinition window)
    {
        ArgumentNullException.ThrowIfNull(table);
        ArgumentNullException.ThrowIfNull(window);
        Table = table;
        Window = window.Validate();
        int rows = table.RowCount;
        var entities = table.GetExtraColumn(window.EntityField);
        double[]? order = window.OrderField is null ? null : OrderKeys(table, window.OrderField);

        var byEntity = new Dictionary<string, List<int>>(StringComparer.Ordinal);
        for (int r = 0; r < rows; r++)
        {
            string entity = entities[r];
            if (string.IsNullOrWhiteSpace(entity))
                throw new CsvFormatException($"line {table.Lines[r]}, column '{window.EntityField}': the entity is empty; a windowed model needs it on every row", table.Lines[r], window.EntityField);
            if (!byEntity.TryGetValue(entity, out var list))
                byEntity.Add(entity, list = []);
            list.Add(r);
        }

        _previous = new int[rows];
        _occurrence = new int[rows];
        foreach (var list in byEntity.Values)
        {
            if (order is not null)
                list.Sort((a, b) => order[a] != order[b] ? order[a].CompareTo(order[b]) : a.CompareTo(b));
            for (int i = 0; i < list.Count; i++)
            {
                _previous[list[i]] = i == 0 ? -1 : list[i - 1];
                _occurrence[list[i]] = i;
            }
        }
        EntityCount = byEntity.Count;
        _sequences = [.. byEntity.Values];

    }

    public FeatureTable Table { get; }

    public WindowDefinition Window { get; }

    public int RowCount => Table.RowCount;

    public int Steps => Window.Steps;

    /// <summary>Distinct entities in the table.</summary>
    public int EntityCount { get; }

    /// <summary>Values per window: W·F.</summary>
    public int Width => Window.Steps * Table.FeatureCount;

    /// <summary>
    /// A train/validation split for windows: each entity's sequence is cut into blocks of 10·W events (fewer for
    /// short sequences) and about
    /// <paramref name="fraction"/> of the blocks (every k-th, staggered across entities so every time of day is
    /// held out somewhere) validate. The W−1 events after a held-out block are in neither set: their windows
    /// contain held-out steps. So no held-out event is ever inside a training window, and the held-out windows
    /// span the whole period (a seasonal series is not calibrated on its last hours only).
    /// </summary>
    public (int[] Train, int[] Validation) Split(double fraction)
    {
        if (fraction <= 0)
            return ([.. Enumerable.Range(0, RowCount)], []);
        int period = Math.Max(2, (int)Math.Round(1 / fraction));
        var train = new List<int>();
        var validation = new List<int>();
        for (int e = 0; e < _sequences.Count; e++)
        {
            var sequence = _sequences[e];
            int block = Math.Max(2, Math.Min(10 * Steps, sequence.Count / period));
            int guard = 0;
            for (int i = 0; i < sequence.Count; i++)
            {
                int b = i / block;
                if ((b + e) % period == period - 1)
                {
                    validation.Add(sequence[i]);
                    guard = Steps - 1;
                }
                else if (guard > 0)
                {
                    guard--;
                }
                else
                {
                    train.Add(sequence[i]);
                }
            }
        }
        if (train.Count == 0)
            return ([.. Enumerable.Range(0, RowCount)], []);
        train.Sort();
        validation.Sort();
        return ([.. train], [.. validation]);
    }

    /// <summary>The row before <paramref name="row"/> in its entity's order, or −1 for the entity's first row.</summary>
    public int Previous(int row) => _previous[row];

    /// <summary>Row <paramref name="row"/>'s window of raw values and mask (the model's input contract), [W, F] each.</summary>
    public void CopyRaw(int row, Span<float> x, Span<float> mask) => Copy(row, Table.X, x, mask);

    /// <summary>
    /// Row <paramref name="row"/>'s raw window with the history steps whose rows are flagged masked
    /// (<see cref="FlaggedHistory"/>); <paramref name="flaggedRows"/> is indexed by row and must be final for
    /// every earlier row of the entity (score in <see cref="Waves"/> order).
    /// </summary>
    public void CopyRaw(int row, Span<float> x, Span<float> mask, ReadOnlySpan<bool> flaggedRows)
    {
        Copy(row, Table.X, x, mask);
        Span<bool> flagged = stackalloc bool[Steps - 1];
        int current = _previous[row];
        for (int step = Steps - 2; step >= 0 && current >= 0; step--)
        {
            flagged[step] = flaggedRows[current];
            current = _previous[current];
        }
        FlaggedHistory.Apply(x, mask, flagged, Table.FeatureCount);
    }

    /// <summary>Whether any of the W−1 rows before <paramref name="row"/> in its entity's order is flagged.</summary>
    public bool HoldsFlagged(int row, ReadOnlySpan<bool> flaggedRows)
    {
        int current = _previous[row];
        for (int step = 0; step < Steps - 1 && current >= 0; step++, current = _previous[current])
        {
            if (flaggedRows[current])
                return true;
        }
        return false;
    }

    /// <summary>Row <paramref name="row"/>'s position in its entity's order (0 for the entity's first row).</summary>
    public int Occurrence(int row) => _occurrence[row];

    /// <summary>
    /// The rows in waves by per-entity occurrence: wave k holds every entity's k-th row (in row order), so a wave's
    /// windows depend only on rows of earlier waves. Scoring with <see cref="WindowDefinition.MaskFlaggedHistory"/>
    /// goes wave by wave.
    /// </summary>
    public IReadOnlyList<int[]> Waves()
    {
        int count = RowCount == 0 ? 0 : _occurrence.Max() + 1;
        var sizes = new int[count];
        foreach (int k in _occurrence)
            sizes[k]++;
        var waves = new int[count][];
        for (int k = 0; k < count; k++)
            waves[k] = new int[sizes[k]];
        Array.Clear(sizes);
        for (int r = 0; r < RowCount; r++)
            waves[_occurrence[r]][sizes[_occurrence[r]]++] = r;
        return waves;
    }

    /// <summary>The engine's input for <paramref name="rows"/>: standardized windows and their masks, [rows, W·F] each.</summary>
    public (float[] Values, float[] Mask) Standardized(ReadOnlySpan<int> rows)
    {
        var standardized = Table.StandardizedValues();
        var values = new float[rows.Length * Width];
        var mask = new float[rows.Length * Width];
        for (int i = 0; i < rows.Length; i++)
            Copy(rows[i], standardized, values.AsSpan(i * Width, Width), mask.AsSpan(i * Width, Width));
        return (values, mask);
    }

    /// <summary>All rows' standardized windows, in input order.</summary>
    public (float[] Values, float[] Mask) Standardized()
    {
        var all = new int[RowCount];
        for (int r = 0; r < all.Length; r++)
            all[r] = r;
        return Standardized(all);
    }

    private void Copy(int row, float[] source, Span<float> x, Span<float> mask)
    {
        var steps = new TableSteps(this, source, row);
        WindowAssembly.Fill(ref steps, Steps, Table.FeatureCount, x, mask);
    }

    /// <summary>A row's entity history in the table, newest first (walks <see cref="Previous"/>).</summary>
    private ref struct TableSteps(FeatureWindows windows, float[] source, int row) : IWindowSteps
    {
        private int _row = row;
        private int _back;

        public bool TryStep(int back, out ReadOnlySpan<float> values, out ReadOnlySpan<float> mask)
        {
            // Fill asks for back = 0, 1, 2, … in order: follow the chain one step per call.
            for (; _back < back && _row >= 0; _back++)
                _row = windows._previous[_row];
            int f = windows.Table.FeatureCount;
            if (_row < 0)
            {
                values = mask = default;
                return false;
            }
            values = source.AsSpan(_row * f, f);
            mask = windows.Table.Mask.AsSpan(_row * f, f);
            return true;
        }
    }

    /// <summary>Order values as numbers: a number as is, else a date/time as its UTC ticks.</summary>
    private static double[] OrderKeys(FeatureTable table, string column)
    {
        var values = table.GetExtraColumn(column);
        var keys = new double[values.Count];
        for (int r = 0; r < keys.Length; r++)
        {
            var text = values[r].AsSpan().Trim();
            if (CellText.TryParseNumber(text, out double number))
                keys[r] = number;
            else if (DateTimeOffset.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var time))
                keys[r] = time.UtcTicks;
            else
                throw new CsvFormatException(
                    $"line {table.Lines[r]}, column '{column}': '{CsvFormatException.Excerpt(text)}' is neither a number nor a date/time (the window's order column)",
                    table.Lines[r], column);
        }
        return keys;
    }
}
