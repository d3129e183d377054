using System.Globalization;
using System.Text;
using AnomalyVae.Events;
using AnomalyVae.Model;
using AnomalyVae.Tools;
using AnomalyVae.UnitTests.Events;

namespace AnomalyVae.UnitTests.Tools;

/// <summary>The bad events are bad for the reason they claim: the decoder gives exactly that code for each.</summary>
public class BadEventStreamTests
{
    private const int MaxPayloadBytes = 1024;
    private static readonly FeatureSchema s_schema = EventDecoderTests.Schema;

    private static byte[] Valid(int i) => Encoding.UTF8.GetBytes(string.Create(CultureInfo.InvariantCulture,
        $"{{\"machine_id\":\"m{i % 7}\",\"ts\":\"2024-05-01T12:00:{i % 60:D2}Z\",\"temp\":{20 + (i % 9) * 0.5},\"bytes\":{100 + i},\"status\":\"{(i % 3 == 0 ? "ok" : "warn")}\",\"door\":{(i % 2 == 0 ? "true" : "false")},\"code\":{(i % 2 == 0 ? 3 : 7)},\"note\":\"n{i}\"}}"));

    [Theory]
    [InlineData(1, 10)]
    [InlineData(2, 3)]
    public void Every_bad_event_decodes_to_exactly_its_reason_and_every_reason_occurs(long seed, int maxDepth)
    {
        var decoder = new EventDecoder(s_schema, "machine_id", "ts", MaxPayloadBytes, maxDepth);
        var generator = new BadEventStream(s_schema, "machine_id", "ts", MaxPayloadBytes, maxDepth, seed);
        var x = new float[s_schema.Count];
        var mask = new float[s_schema.Count];
        var byReason = new Dictionary<string, int>();
        for (int i = 0; i < 10_000; i++)
        {
            var valid = Valid(i);
            Assert.True(decoder.Decode(valid, x, mask).IsSuccess);
            var bad = generator.Next(valid);
            var result = decoder.Decode(bad.Payload, x, mask);
            Assert.True(result.Code == bad.Reason, $"{Encoding.UTF8.GetString(bad.Payload)}: expected {bad.Reason}, decoder says {result}");
            Assert.DoesNotContain((byte)'\n', bad.Payload);
            Assert.DoesNotContain((byte)'\r', bad.Payload);
            byReason[bad.Reason] = byReason.GetValueOrDefault(bad.Reason) + 1;
        }
        Assert.Equal(generator.Reasons.Order(), byReason.Keys.Order());
        // All ten codes a decode failure can have.
        Assert.Equal(Enum.GetValues<EventDecodeError>().Where(e => e != EventDecodeError.None).Select(EventDecodeResult.CodeOf).Order(), byReason.Keys.Order());
        Assert.All(byReason.Values, n => Assert.InRange(n, 700, 1300));
    }

    [Fact]
    public void The_same_seed_gives_the_same_payloads_and_another_seed_others()
    {
        static List<byte[]> Run(long seed)
        {
            var generator = new BadEventStream(s_schema, "machine_id", "ts", MaxPayloadBytes, seed: seed);
            return [.. Enumerable.Range(0, 500).Select(i => generator.Next(Valid(i)).Payload)];
        }
        var first = Run(7);
        Assert.Equal(first, Run(7));
        Assert.NotEqual(first, Run(8));
    }

    [Fact]
    public void Without_entity_and_time_fields_their_reasons_are_not_produced()
    {
        var generator = new BadEventStream(s_schema, null, null, MaxPayloadBytes);
        Assert.DoesNotContain("bad_entity", generator.Reasons);
        Assert.DoesNotContain("bad_event_time", generator.Reasons);
        var decoder = new EventDecoder(s_schema, maxPayloadBytes: MaxPayloadBytes);
        var x = new float[s_schema.Count];
        var mask = new float[s_schema.Count];
        for (int i = 0; i < 1000; i++)
        {
            var bad = generator.Next(Valid(i));
            Assert.Equal(bad.Reason, decoder.Decode(bad.Payload, x, mask).Code);
        }
    }

    [Fact]
    public void A_valid_event_that_is_not_an_object_is_refused()
    {
        var generator = new BadEventStream(s_schema, null, null, MaxPayloadBytes);
        Assert.Throws<ArgumentException>(() => generator.Next("[1]"u8));
        Assert.Throws<ArgumentException>(() => generator.Next("{\"a\""u8));
    }
}
