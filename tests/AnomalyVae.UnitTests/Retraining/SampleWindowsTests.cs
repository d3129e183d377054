using System.Text;
using AnomalyVae.Model;
using AnomalyVae.Retraining;

namespace AnomalyVae.UnitTests.Retraining;

/// <summary>
/// How retraining turns a windowed detector's sample rows (event + stored history, migration 0010) into windows:
/// the newest W−1 steps before the event, empty leading steps, flags aligned with their steps, rows without history
/// skipped, training windows laid out so <see cref="FeatureWindows"/> rebuilds them exactly, and the encoding kept.
/// </summary>
public sealed class SampleWindowsTests
{
    private static readonly FeatureSchema Schema = new([
        FittedFeature.Numeric("x", 0, 1),
        FittedFeature.Categorical("c", ["a", "b"]),
        FittedFeature.Binary("f", ["no"], ["yes"]),
    ]);

    private static readonly WindowDefinition Window = new(4, "id") { MaskFlaggedHistory = true };

    private static byte[] Json(string text) => Encoding.UTF8.GetBytes(text);

    private static string History(params (double X, bool Flagged)[] steps) =>
        "{\"steps\":[" + string.Join(",", steps.Select(s => $"{{\"x\":{s.X},\"c\":\"b\",\"f\":\"yes\"}}")) + "],\"flagged\":["
        + string.Join(",", steps.Select(s => s.Flagged ? "true" : "false")) + "]}";

    [Fact]
    public void A_window_holds_the_newest_steps_before_the_event_with_their_flags_and_empty_leading_steps()
    {
        var rows = new List<SampleEvent>
        {
            SampleEvent.From(Json("{\"x\":9,\"c\":\"a\",\"f\":\"no\"}"), History((1, false), (2, true), (3, false), (4, false), (5, true))),
            SampleEvent.From(Json("{\"x\":7}"), History((6, true))),
            SampleEvent.From(Json("{\"x\":8}"), null),
            SampleEvent.From(Json("{\"x\":8}"), "{\"steps\":[]}"),
        };
        var decoded = RetrainingData.DecodeWindows(Schema, Window, rows, maskFlagged: false);
        Assert.Equal([true, true, false, true], decoded.Decoded);
        int f = Schema.Count, width = 4 * f;
        // Row 0: steps 3, 4, 5 (the newest three) then the event; x in column 0 of each step.
        Assert.Equal([3f, 4f, 5f, 9f], Enumerable.Range(0, 4).Select(s => decoded.X[s * f]));
        Assert.Equal([false, false, true], decoded.Flags!.Take(3));
        Assert.Equal([4f, 2f, 1f], decoded.X.Skip(f).Take(f)); // "b" is vocabulary index 2, "yes" bit 1
        Assert.Equal([9f, 1f, 0f], decoded.X.Skip(3 * f).Take(f)); // the event: "a" index 1, "no" bit 0
        // Row 1: two empty leading steps (mask 0), then 6 (flagged), then the event with c and f missing.
        var mask1 = decoded.Mask.AsSpan(width, width).ToArray();
        Assert.All(mask1.Take(2 * f), m => Assert.Equal(0f, m));
        Assert.Equal([1f, 1f, 1f, 1f, 0f, 0f], mask1.Skip(2 * f));
        Assert.Equal([false, false, true], decoded.Flags!.Skip(3).Take(3));
        // Row 3: an entity's first event, alone in its window.
        Assert.All(decoded.Mask.AsSpan(3 * width, 3 * f).ToArray(), m => Assert.Equal(0f, m));

        // Training windows mask the flagged steps (Donut: known anomalies are missing).
        var training = RetrainingData.DecodeWindows(Schema, Window, rows, maskFlagged: true);
        Assert.Equal([0f, 0f, 0f], training.Mask.Skip(2 * f).Take(f));
        Assert.Equal([0f, 0f, 0f], training.X.Skip(2 * f).Take(f));
        Assert.Equal([0f, 0f, 0f], training.Mask.Skip(width + (2 * f)).Take(f));
        Assert.Equal(decoded.Mask.Take(2 * f), training.Mask.Take(2 * f));
    }

    [Fact]
    public void Training_windows_laid_out_per_row_rebuild_each_stored_window_exactly()
    {
        var rows = new List<SampleEvent>
        {
            SampleEvent.From(Json("{\"x\":9,\"c\":\"a\",\"f\":\"no\"}"), History((1, false), (2, false), (3, false))),
            SampleEvent.From(Json("{\"x\":7}"), History((6, false))),
        };
        foreach (var window in new[] { Window, Window with { OrderField = "ts" } })
        {
            var decoded = RetrainingData.DecodeWindows(Schema, window, rows, maskFlagged: true);
            var (windows, last) = RetrainingData.TrainingWindows(Schema, window, decoded, [0, 1]);
            Assert.Equal([3, 7], last);
            int width = decoded.Width;
            var x = new float[width];
            var mask = new float[width];
            for (int i = 0; i < 2; i++)
            {
                windows.CopyRaw(last[i], x, mask);
                Assert.Equal(decoded.X.AsSpan(i * width, width).ToArray(), x);
                Assert.Equal(decoded.Mask.AsSpan(i * width, width).ToArray(), mask);
            }
        }
    }

    [Fact]
    public void A_history_whose_flags_do_not_match_its_steps_is_refused()
    {
        Assert.ThrowsAny<System.Text.Json.JsonException>(() => SampleEvent.From(Json("{}"), "{\"steps\":[{}],\"flagged\":[]}"));
        Assert.ThrowsAny<System.Text.Json.JsonException>(() => SampleEvent.From(Json("{}"), "[]"));
    }

    [Fact]
    public void Keeping_the_encoding_refits_numeric_features_only()
    {
        var refitted = new FeatureSchema([
            FittedFeature.Numeric("x", 5, 2),
            FittedFeature.Categorical("c", ["b", "a", "z"]),
            FittedFeature.Binary("f"),
        ]);
        var kept = RetrainingData.KeepEncoding(refitted, Schema);
        Assert.Equal((5.0, 2.0), (kept.Features[0].Center, kept.Features[0].Scale));
        Assert.Same(Schema.Features[1], kept.Features[1]);
        Assert.Same(Schema.Features[2], kept.Features[2]);
    }
}
