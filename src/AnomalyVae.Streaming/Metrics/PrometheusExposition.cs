using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Globalization;
using System.Text;

namespace AnomalyVae.Streaming;

/// <summary>
/// Collects the measurements of the chosen meters with a <see cref="MeterListener"/> and writes them in the
/// Prometheus text exposition format (version 0.0.4). Counters become "counter" with a "_total" suffix,
/// histograms "histogram" (cumulative buckets from the instrument's advice, or <see cref="DefaultBuckets"/>),
/// up-down counters and gauges "gauge". Observable instruments are observed at each scrape; a series an
/// observable instrument stops reporting disappears. Recording is allocation-free once a series exists.
/// </summary>
public sealed class PrometheusExposition : IDisposable
{
    public const string ContentType = "text/plain; version=0.0.4; charset=utf-8";

    public static readonly double[] DefaultBuckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

    private readonly MeterListener _listener = new();
    private readonly ConcurrentDictionary<Instrument, InstrumentState> _states = new();
    private readonly Func<Meter, bool> _include;

    /// <summary>Listens to the meters named <paramref name="meterNames"/>.</summary>
    public PrometheusExposition(params string[] meterNames)
        : this(meter => meterNames.Contains(meter.Name, StringComparer.Ordinal))
    {
    }

    public PrometheusExposition(Func<Meter, bool> include)
    {
        _include = include;
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (!_include(instrument.Meter))
                return;
            var state = _states.GetOrAdd(instrument, i => new InstrumentState(i));
            listener.EnableMeasurementEvents(instrument, state);
        };
        _listener.MeasurementsCompleted = (instrument, _) => _states.TryRemove(instrument, out InstrumentState? _);
        _listener.SetMeasurementEventCallback<long>((_, value, tags, state) => ((InstrumentState)state!).Record(value, tags));
        _listener.SetMeasurementEventCallback<int>((_, value, tags, state) => ((InstrumentState)state!).Record(value, tags));
        _listener.SetMeasurementEventCallback<double>((_, value, tags, state) => ((InstrumentState)state!).Record(value, tags));
        _listener.SetMeasurementEventCallback<float>((_, value, tags, state) => ((InstrumentState)state!).Record(value, tags));
        _listener.Start();
    }

    /// <summary>The current values of every instrument, as Prometheus text.</summary>
    public string Scrape()
    {
        foreach (var state in _states.Values)
            state.BeginObservation();
        _listener.RecordObservableInstruments();
        var text = new StringBuilder(4096);
        foreach (var state in _states.Values.OrderBy(s => s.Name, StringComparer.Ordinal))
            state.WriteTo(text);
        return text.ToString();
    }

    public void Dispose() => _listener.Dispose();

    /// <summary>A metric name with everything outside [a-zA-Z0-9_:] replaced by '_' (and no leading digit).</summary>
    public static string MetricName(string name)
    {
        var text = new StringBuilder(name.Length + 1);
        if (name.Length == 0 || char.IsAsciiDigit(name[0]))
            text.Append('_');
        foreach (char c in name)
            text.Append(char.IsAsciiLetterOrDigit(c) || c == '_' || c == ':' ? c : '_');
        return text.ToString();
    }

    /// <summary>A label value escaped for the text format: backslash, double quote and line feed.</summary>
    public static string EscapeLabelValue(string value) =>
        value.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal)
            .Replace("\n", "\\n", StringComparison.Ordinal);

    /// <summary>A sample value: shortest round-trip text, "+Inf", "-Inf" or "NaN".</summary>
    public static string FormatValue(double value) =>
        double.IsPositiveInfinity(value) ? "+Inf"
        : double.IsNegativeInfinity(value) ? "-Inf"
        : double.IsNaN(value) ? "NaN"
        : value.ToString("R", CultureInfo.InvariantCulture);

    private enum Kind
    {
        Counter,
        Gauge,
        Histogram,
    }

    private sealed class InstrumentState
    {
        private readonly List<Series> _series = [];
        private readonly Kind _kind;
        private readonly bool _observable;
        private readonly bool _lastValue;
        private readonly double[] _bounds;
        private readonly string? _help;

        public InstrumentState(Instrument instrument)
        {
            var type = instrument.GetType().GetGenericTypeDefinition();
            _observable = instrument.IsObservable;
            if (type == typeof(Counter<>) || type == typeof(ObservableCounter<>))
            {
                _kind = Kind.Counter;
            }
            else if (type == typeof(Histogram<>))
            {
                _kind = Kind.Histogram;
            }
            else
            {
                _kind = Kind.Gauge;
            }
            // Observable instruments report totals and gauges report levels: keep the last value, not a sum.
            _lastValue = _observable || type == typeof(Gauge<>);
            string name = MetricName(instrument.Name);
            Name = _kind == Kind.Counter && !name.EndsWith("_total", StringComparison.Ordinal) ? name + "_total" : name;
            _help = instrument.Description;
            _bounds = _kind == Kind.Histogram ? Bounds(instrument) : [];
        }

        public string Name { get; }

        public void BeginObservation()
        {
            if (!_observable)
                return;
            lock (_series)
                _series.Clear();
        }

        public void Record(double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            lock (_series)
            {
                var series = Find(tags);
                if (_kind == Kind.Histogram)
                {
                    series.Count++;
                    series.Value += value;
                    for (int i = 0; i < _bounds.Length; i++)
                    {
                        if (value <= _bounds[i])
                        {
                            series.Buckets[i]++;
                            break;
                        }
                    }
                }
                else if (_lastValue)
                {
                    series.Value = value;
                }
                else
                {
                    series.Value += value;
                }
            }
        }

        public void WriteTo(StringBuilder text)
        {
            lock (_series)
            {
                if (_series.Count == 0)
                    return;
                if (!string.IsNullOrEmpty(_help))
                    text.Append("# HELP ").Append(Name).Append(' ').Append(_help.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\n", "\\n", StringComparison.Ordinal)).Append('\n');
                text.Append("# TYPE ").Append(Name).Append(' ').Append(_kind switch
                {
                    Kind.Counter => "counter",
                    Kind.Histogram => "histogram",
                    _ => "gauge",
                }).Append('\n');
                foreach (var series in _series)
                {
                    if (_kind != Kind.Histogram)
                    {
                        text.Append(Name);
                        Labels(text, series, null);
                        text.Append(' ').Append(FormatValue(series.Value)).Append('\n');
                        continue;
                    }
                    long cumulative = 0;
                    for (int i = 0; i < _bounds.Length; i++)
                    {
                        cumulative += series.Buckets[i];
                        text.Append(Name).Append("_bucket");
                        Labels(text, series, FormatValue(_bounds[i]));
                        text.Append(' ').Append(cumulative.ToString(CultureInfo.InvariantCulture)).Append('\n');
                    }
                    text.Append(Name).Append("_bucket");
                    Labels(text, series, "+Inf");
                    text.Append(' ').Append(series.Count.ToString(CultureInfo.InvariantCulture)).Append('\n');
                    text.Append(Name).Append("_sum");
                    Labels(text, series, null);
                    text.Append(' ').Append(FormatValue(series.Value)).Append('\n');
                    text.Append(Name).Append("_count");
                    Labels(text, series, null);
                    text.Append(' ').Append(series.Count.ToString(CultureInfo.InvariantCulture)).Append('\n');
                }
            }
        }

        private static void Labels(StringBuilder text, Series series, string? le)
        {
            if (series.Labels.Length == 0 && le is null)
                return;
            text.Append('{');
            bool first = true;
            foreach (var (key, value) in series.Labels)
            {
                if (!first)
                    text.Append(',');
                first = false;
                text.Append(key).Append("=\"").Append(EscapeLabelValue(value)).Append('"');
            }
            if (le is not null)
                text.Append(first ? "" : ",").Append("le=\"").Append(le).Append('"');
            text.Append('}');
        }

        private Series Find(ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            foreach (var series in _series)
            {
                if (series.Matches(tags))
                    return series;
            }
            var created = new Series(tags, _bounds.Length + 1);
            _series.Add(created);
            return created;
        }

        private static double[] Bounds(Instrument instrument)
        {
            IReadOnlyList<double>? advised = instrument switch
            {
                Histogram<double> h => h.Advice?.HistogramBucketBoundaries,
                Histogram<long> h => h.Advice?.HistogramBucketBoundaries?.Select(b => (double)b).ToArray(),
                Histogram<int> h => h.Advice?.HistogramBucketBoundaries?.Select(b => (double)b).ToArray(),
                Histogram<float> h => h.Advice?.HistogramBucketBoundaries?.Select(b => (double)b).ToArray(),
                _ => null,
            };
            return advised is { Count: > 0 } ? [.. advised.Order()] : DefaultBuckets;
        }
    }

    /// <summary>One label set of an instrument.</summary>
    private sealed class Series
    {
        private readonly KeyValuePair<string, object?>[] _tags;

        public Series(ReadOnlySpan<KeyValuePair<string, object?>> tags, int buckets)
        {
            _tags = tags.ToArray();
            Labels = [.. _tags
                .Select(t => (MetricName(t.Key), Convert.ToString(t.Value, CultureInfo.InvariantCulture) ?? ""))
                .OrderBy(l => l.Item1, StringComparer.Ordinal)];
            Buckets = new long[buckets];
        }

        public (string Key, string Value)[] Labels { get; }

        public long[] Buckets { get; }

        public double Value { get; set; }

        public long Count { get; set; }

        public bool Matches(ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            if (tags.Length != _tags.Length)
                return false;
            foreach (var tag in tags)
            {
                bool found = false;
                foreach (var own in _tags)
                {
                    if (own.Key == tag.Key && Equals(own.Value, tag.Value))
                    {
                        found = true;
                        break;
                    }
                }
                if (!found)
                    return false;
            }
            return true;
        }
    }
}
