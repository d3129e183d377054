using System.Diagnostics.Metrics;
using AnomalyVae.Streaming;

namespace AnomalyVae.UnitTests.Streaming;

/// <summary>The hand-written Prometheus text exposition: types, suffixes, cumulative buckets, label escaping.</summary>
public sealed class PrometheusExpositionTests
{
    [Fact]
    public void Counter_gets_total_suffix_type_help_and_sums_per_label_set()
    {
        var name = $"test.meter.{Guid.NewGuid():N}";
        using var exposition = new PrometheusExposition(name);
        using var meter = new Meter(name);
        var counter = meter.CreateCounter<long>("requests", null, "Requests\nserved \\ total.");
        counter.Add(2, new KeyValuePair<string, object?>("detector", "a"));
        counter.Add(3, new KeyValuePair<string, object?>("detector", "a"));
        counter.Add(7, new KeyValuePair<string, object?>("detector", "b"));

        var text = exposition.Scrape();

        Assert.Equal(
            "# HELP requests_total Requests\\nserved \\\\ total.\n"
            + "# TYPE requests_total counter\n"
            + "requests_total{detector=\"a\"} 5\n"
            + "requests_total{detector=\"b\"} 7\n",
            text);
    }

    [Fact]
    public void Histogram_buckets_are_cumulative_with_inf_sum_and_count()
    {
        var name = $"test.meter.{Guid.NewGuid():N}";
        using var exposition = new PrometheusExposition(name);
        using var meter = new Meter(name);
        var histogram = meter.CreateHistogram("latency_seconds", "s", null, null,
            new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.1, 1] });
        foreach (var value in new[] { 0.05, 0.1, 0.5, 3 })
            histogram.Record(value);

        var text = exposition.Scrape();

        Assert.Equal(
            "# TYPE latency_seconds histogram\n"
            + "latency_seconds_bucket{le=\"0.1\"} 2\n"
            + "latency_seconds_bucket{le=\"1\"} 3\n"
            + "latency_seconds_bucket{le=\"+Inf\"} 4\n"
            + "latency_seconds_sum 3.65\n"
            + "latency_seconds_count 4\n",
            text);
    }

    [Fact]
    public void Label_values_are_escaped_and_names_sanitized()
    {
        var name = $"test.meter.{Guid.NewGuid():N}";
        using var exposition = new PrometheusExposition(name);
        using var meter = new Meter(name);
        var gauge = meter.CreateUpDownCounter<int>("queue.depth");
        gauge.Add(4, new KeyValuePair<string, object?>("path", "C:\\tmp \"x\"\nnext"));
        gauge.Add(-1, new KeyValuePair<string, object?>("path", "C:\\tmp \"x\"\nnext"));

        var text = exposition.Scrape();

        Assert.Equal("# TYPE queue_depth gauge\nqueue_depth{path=\"C:\\\\tmp \\\"x\\\"\\nnext\"} 3\n", text);
    }

    [Fact]
    public void Observable_gauge_reports_only_what_it_observes_now()
    {
        var name = $"test.meter.{Guid.NewGuid():N}";
        using var exposition = new PrometheusExposition(name);
        using var meter = new Meter(name);
        var values = new List<Measurement<long>>
        {
            new(10, new KeyValuePair<string, object?>("partition", 0)),
            new(20, new KeyValuePair<string, object?>("partition", 1)),
        };
        meter.CreateObservableGauge("lag", () => values.ToArray());

        Assert.Equal("# TYPE lag gauge\nlag{partition=\"0\"} 10\nlag{partition=\"1\"} 20\n", exposition.Scrape());
        values.RemoveAt(0);
        Assert.Equal("# TYPE lag gauge\nlag{partition=\"1\"} 20\n", exposition.Scrape());
    }

    [Fact]
    public void Other_meters_are_not_exposed_and_values_format_specials()
    {
        var name = $"test.meter.{Guid.NewGuid():N}";
        using var exposition = new PrometheusExposition(name);
        using var other = new Meter(name + ".other");
        other.CreateCounter<long>("hidden").Add(1);
        Assert.Equal("", exposition.Scrape());
        Assert.Equal("+Inf", PrometheusExposition.FormatValue(double.PositiveInfinity));
        Assert.Equal("-Inf", PrometheusExposition.FormatValue(double.NegativeInfinity));
        Assert.Equal("NaN", PrometheusExposition.FormatValue(double.NaN));
        Assert.Equal("0.001", PrometheusExposition.FormatValue(0.001));
        Assert.Equal("_9lives_ok:x", PrometheusExposition.MetricName("9lives.ok:x"));
    }
}
