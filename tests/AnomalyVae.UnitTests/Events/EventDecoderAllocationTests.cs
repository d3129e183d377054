using System.Text;
using AnomalyVae.Events;
using Xunit.Abstractions;

namespace AnomalyVae.UnitTests.Events;

/// <summary>The success path allocates nothing: measured with the thread's allocation counter after a warm-up.</summary>
public class EventDecoderAllocationTests(ITestOutputHelper output)
{
    private const int Iterations = 2000;

    private static readonly EventDecoder s_decoder = new(EventDecoderTests.Schema, entityField: "machine_id", timeField: "ts");

    public static TheoryData<string, string> Events => new()
    {
        { "numeric", """{"temp": 21.5, "bytes": 1024}""" },
        { "numeric strings", """{"temp": "21.5", "bytes": " 1e3 ", "door": null}""" },
        { "categorical", """{"status": "warn", "code": 7}""" },
        { "categorical unknown and escaped", """{"status": "w\u0061rn", "code": "zzz"}""" },
        { "categorical long string (pooled scratch)", "{\"status\": \"" + new string('w', 1000) + "\"}" },
        { "binary", """{"door": true}""" },
        { "binary token", """{"door": "yes"}""" },
        { "binary number", """{"door": 0}""" },
        { "entity and ISO time", """{"machine_id": "press-7", "ts": "2024-05-01T14:00:00.123+02:00", "temp": 1}""" },
        { "escaped entity and epoch time", """{"machine_id": "m-\u00e9\"x", "ts": 1714564800000}""" },
        { "numeric entity, date-only time", """{"machine_id": 42, "ts": "2024-05-01"}""" },
        { "ignored nested fields", """{"meta": {"a": [1, {"b": "c\n"}], "d": []}, "other": "\ud83d\ude00", "temp": 1}""" },
        {
            "everything",
            """{"temp": 21.5, "bytes": "1e3", "status": "warn", "door": true, "code": 7, "machine_id": "m-1", "ts": "2024-05-01T12:00:00Z", "extra": {"nested": [1, {"a": null}]}}"""
        },
    };

    [Theory]
    [MemberData(nameof(Events))]
    public void DecodingAllocatesNothing(string label, string json)
    {
        var payload = Encoding.UTF8.GetBytes(json);
        var x = new float[s_decoder.FeatureCount];
        var mask = new float[s_decoder.FeatureCount];
        Span<char> entity = stackalloc char[64];
        var ok = true;
        for (var i = 0; i < 200; i++)
            ok &= Run(payload, x, mask, entity);
        Assert.True(ok, s_decoder.Decode(payload, x, mask).ToString());

        long allocated = Allocations.Fewest(() =>
        {
            Span<char> scratch = stackalloc char[64];
            for (var i = 0; i < Iterations; i++)
                ok &= Run(payload, x, mask, scratch);
        });

        output.WriteLine($"{label}: {allocated} bytes over {Iterations} decodes (fewest of up to three runs)");
        Assert.True(ok);
        Assert.Equal(0, allocated);
    }

    [Fact]
    public void BatchDecodingAllocatesNothing()
    {
        var payloads = Events.Select(row => Encoding.UTF8.GetBytes((string)row[1])).ToArray();
        using var batch = new EventBatch(payloads.Length, s_decoder.FeatureCount);
        void Fill()
        {
            batch.Clear();
            foreach (var payload in payloads)
                s_decoder.Decode(payload, batch);
        }

        Fill();
        Assert.Equal(payloads.Length, batch.Count);
        long allocated = Allocations.Fewest(() =>
        {
            for (var i = 0; i < 200; i++)
                Fill();
        });
        output.WriteLine($"batch: {allocated} bytes over {200 * payloads.Length} decodes");
        Assert.Equal(payloads.Length, batch.Count);
        Assert.Equal(0, allocated);
    }

    private static bool Run(byte[] payload, float[] x, float[] mask, Span<char> entity)
    {
        var result = s_decoder.Decode(payload, x, mask);
        if (!result.IsSuccess)
            return false;
        // Reading the entity into a caller buffer and the time must not allocate either.
        if (result.Entity.IsPresent && !result.Entity.TryCopyTo(payload, entity, out _))
            return false;
        return result.EventTime is null || result.EventTime.Value.Offset == TimeSpan.Zero;
    }
}
