using System.Text;
using System.Text.Json;
using AnomalyVae.Service;
using AnomalyVae.Service.Storage;

namespace AnomalyVae.UnitTests.Service;

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
}
