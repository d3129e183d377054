using System.Text;
using System.Text.Json;
using AnomalyVae.Events;
using AnomalyVae.Streaming;

namespace AnomalyVae.UnitTests.Events;

/// <summary>What goes into the jsonb event column, and the score window behind scoring_stats.</summary>
public sealed class EventJsonTests
{
    [Theory]
    [InlineData("{\"a\":1,\"s\":\"x\\u00e9\"}", true)]
    [InlineData("{\"a\":1.5e300}", true)]
    [InlineData("{\"a\":1,\"s\":\"nul \\u0000\"}", false)]
    [InlineData("{\"a\":1e999999}", false)]
    [InlineData("{\"a\":1E-5000}", false)]
    public void Payloads_jsonb_cannot_hold_are_stored_as_base64(string payload, bool verbatim)
    {
        var bytes = Encoding.UTF8.GetBytes(payload);
        var stored = EventJson.ForJsonb(bytes);
        if (verbatim)
        {
            Assert.Equal(payload, stored);
            return;
        }
        using var document = JsonDocument.Parse(stored);
        Assert.Equal(bytes, document.RootElement.GetProperty("payload_base64").GetBytesFromBase64());
        Assert.Equal("base64", document.RootElement.GetProperty("stored_as").GetString());
        // Readers (retraining) get the original bytes back.
        Assert.Equal(bytes, EventJson.FromJsonb(stored));
    }

    [Theory]
    [InlineData("{\"a\":1}")]
    [InlineData("{\"payload_base64\":\"AAAA\",\"stored_as\":\"base64\",\"temperature\":3}")]
    [InlineData("{\"payload_base64\":\"AAAA\",\"stored_as\":\"text\"}")]
    [InlineData("{\"payload_base64\":7,\"stored_as\":\"base64\"}")]
    public void Stored_events_that_are_not_the_wrapper_read_back_as_they_are(string stored)
    {
        Assert.Equal(Encoding.UTF8.GetBytes(stored), EventJson.FromJsonb(stored));
    }

    [Fact]
    public void Byte_order_mark_is_dropped()
    {
        Assert.Equal("{\"a\":1}", EventJson.ForJsonb([0xEF, 0xBB, 0xBF, .. "{\"a\":1}"u8]));
    }

    [Fact]
    public void Score_window_quantiles_are_exact_below_the_reservoir_size_and_reset_per_window()
    {
        var window = new ScoreWindow(windowSeconds: 60, reservoirSize: 1000);
        var t0 = new DateTime(2026, 1, 1, 0, 0, 30, DateTimeKind.Utc);
        window.Advance(t0);
        Assert.Equal(new DateTime(2026, 1, 1, 0, 0, 0, DateTimeKind.Utc), window.Start);
        Assert.Null(window.Quantiles());
        for (int i = 1; i <= 100; i++)
            window.Add(i);
        window.Add(double.NaN);
        Assert.Equal((51.0, 91.0, 100.0, 100.0), window.Quantiles());
        window.Advance(t0.AddSeconds(20));
        Assert.NotNull(window.Quantiles());
        window.Advance(t0.AddSeconds(40));
        Assert.Null(window.Quantiles());
    }

    [Theory]
    [InlineData(1, 0)]
    [InlineData(2, 0)]
    [InlineData(7, 3)]
    [InlineData(100, 0)]
    [InlineData(4096, 0)]
    [InlineData(4096, 5)]
    [InlineData(20_000, 0)]
    public void Score_window_quantiles_are_the_order_statistics_of_its_reservoir(int scores, int distinct)
    {
        // Selection must give what a full sort gives: random, shuffled ties (distinct > 0: few values), repeated calls.
        var window = new ScoreWindow(windowSeconds: 60, reservoirSize: 4096, seed: 3);
        window.Advance(new DateTime(2026, 1, 1, 0, 0, 0, DateTimeKind.Utc));
        var random = new Random(scores + distinct);
        var added = new List<double>();
        for (int i = 0; i < scores; i++)
        {
            double score = distinct > 0 ? random.Next(distinct) : random.NextDouble() * 100 - 20;
            window.Add(score);
            added.Add(score);
            if (i == scores / 2 || i == scores - 1)
            {
                var q = window.Quantiles()!.Value;
                if (added.Count <= 4096)
                {
                    var sorted = added.Order().ToArray();
                    int n = sorted.Length;
                    double At(double p) => sorted[(int)Math.Min(n - 1, Math.Floor(p * n))];
                    Assert.Equal((At(0.5), At(0.9), At(0.99), sorted[^1]), q);
                }
                else
                {
                    // Beyond the reservoir: sampled, but ordered, within the scores seen, and the max exact.
                    Assert.True(q.P50 <= q.P90 && q.P90 <= q.P99 && q.P99 <= q.Max, q.ToString());
                    Assert.Equal(added.Max(), q.Max);
                    Assert.Contains(q.P50, added);
                }
            }
        }
    }
}
