using System.Buffers;
using System.Text;
using System.Text.Json;
using AnomalyVae.Events;
using AnomalyVae.Streaming;
using AnomalyVae.UnitTests.Model;

namespace AnomalyVae.UnitTests.Events;

public class DeadLetterTests
{
    private static readonly DateTimeOffset s_received = new(2024, 5, 1, 14, 0, 0, 123, TimeSpan.FromHours(2));
    private static readonly SchemaValidator s_schema = SchemaValidator.ForFile("dead-letter.schema.json");

    private static DeadLetter Letter(byte[] payload, string reason = "wrong_type", string message = "feature 'temp' (numeric): \"x\" is not a number") =>
        new(reason, message, "press", "events", 3, 1234, s_received, payload);

    private static void AssertValid(byte[] envelope)
    {
        using var document = JsonDocument.Parse(envelope);
        Assert.Empty(s_schema.Validate(document.RootElement));
    }

    [Fact]
    public void EnvelopeHasTheDocumentedFields()
    {
        var payload = """{"temp": "x"}"""u8.ToArray();
        var envelope = Letter(payload).ToUtf8();
        using var document = JsonDocument.Parse(envelope);
        var root = document.RootElement;
        Assert.Equal("wrong_type", root.GetProperty("reason").GetString());
        Assert.Equal("feature 'temp' (numeric): \"x\" is not a number", root.GetProperty("message").GetString());
        Assert.Equal("press", root.GetProperty("detector").GetString());
        Assert.Equal("events", root.GetProperty("topic").GetString());
        Assert.Equal(3, root.GetProperty("partition").GetInt32());
        Assert.Equal(1234, root.GetProperty("offset").GetInt64());
        Assert.Equal("2024-05-01T12:00:00.123Z", root.GetProperty("received_at").GetString());
        Assert.Equal(payload.Length, root.GetProperty("payload_length").GetInt64());
        Assert.False(root.GetProperty("payload_truncated").GetBoolean());
        Assert.Equal(payload, Convert.FromBase64String(root.GetProperty("payload_base64").GetString()!));
        // Readable for people tailing the topic: quotes in the message are escaped as \", not \u0022.
        Assert.Contains("'temp'", Encoding.UTF8.GetString(envelope));
        AssertValid(envelope);
    }

    public static TheoryData<byte[]> Payloads => new()
    {
        Array.Empty<byte>(),
        """{"temp": 21.5}"""u8.ToArray(),
        new byte[] { 0xFF, 0xFE, 0x00, 0x7B, 0xC3 }, // not UTF-8, with a NUL and a cut sequence
        Enumerable.Range(0, 256).Select(i => (byte)i).ToArray(),
        Encoding.UTF8.GetBytes("{\"s\": \"é😀\\ud800\"}"),
    };

    [Theory]
    [MemberData(nameof(Payloads))]
    public void RoundTripKeepsEveryByte(byte[] payload)
    {
        var letter = Letter(payload);
        var envelope = letter.ToUtf8();
        AssertValid(envelope);
        var back = DeadLetter.Parse(envelope);
        Assert.Equal(payload, back.Payload.ToArray());
        Assert.Equal(payload.Length, back.PayloadLength);
        Assert.False(back.PayloadTruncated);
        Assert.Equal(letter.Reason, back.Reason);
        Assert.Equal(letter.Message, back.Message);
        Assert.Equal(letter.Detector, back.Detector);
        Assert.Equal(letter.Topic, back.Topic);
        Assert.Equal(letter.Partition, back.Partition);
        Assert.Equal(letter.Offset, back.Offset);
        Assert.Equal(s_received, back.ReceivedAt);
        Assert.Equal(TimeSpan.Zero, back.ReceivedAt.Offset);
    }

    [Fact]
    public void WriteToAnyBufferWriterGivesTheSameBytes()
    {
        var letter = Letter([1, 2, 3]);
        var output = new ArrayBufferWriter<byte>();
        letter.WriteTo(output);
        Assert.Equal(letter.ToUtf8(), output.WrittenSpan.ToArray());
    }

    [Fact]
    public void LargePayloadsAreTruncatedWithTheirLengthKept()
    {
        var payload = new byte[10_000];
        new Random(5).NextBytes(payload);
        var envelope = Letter(payload).ToUtf8(maxPayloadBytes: 1000);
        AssertValid(envelope);
        var back = DeadLetter.Parse(envelope);
        Assert.True(back.PayloadTruncated);
        Assert.Equal(10_000, back.PayloadLength);
        Assert.Equal(payload[..1000], back.Payload.ToArray());
        // Written again, the envelope says the same: a prefix of a 10,000-byte payload.
        Assert.Equal(envelope, back.ToUtf8(maxPayloadBytes: 1000));

        var full = DeadLetter.Parse(Letter(payload).ToUtf8());
        Assert.Equal(payload, full.Payload.ToArray());
    }

    [Fact]
    public void DefaultLimitKeepsTheEnvelopeUnderKafkasDefaultMessageSize()
    {
        var envelope = Letter(new byte[2_000_000], message: new string('m', 10_000)).ToUtf8();
        Assert.True(envelope.Length < 1_000_012, $"{envelope.Length} bytes");
        AssertValid(envelope);
    }

    [Fact]
    public void MessagesAreCutAndCleaned()
    {
        var letter = Letter([1], message: "bad \ud800 surrogate " + new string('x', 10_000));
        Assert.Equal(DeadLetter.MaxMessageLength, letter.Message.Length);
        Assert.EndsWith("…", letter.Message);
        Assert.Contains("bad \ufffd surrogate", letter.Message);
        AssertValid(letter.ToUtf8());
    }

    [Fact]
    public void ForDecodeFailureCarriesTheCodeAndMessage()
    {
        var decoder = new EventDecoder(EventDecoderTests.Schema);
        var payload = """{"temp": [1]}"""u8.ToArray();
        var result = decoder.Decode(payload, new float[decoder.FeatureCount], new float[decoder.FeatureCount]);
        var letter = DeadLetter.ForDecodeFailure(result, "press", "events", 0, 7, s_received, payload);
        Assert.Equal("wrong_type", letter.Reason);
        Assert.Equal(result.Message, letter.Message);
        AssertValid(letter.ToUtf8());

        var ok = decoder.Decode("{}"u8, new float[decoder.FeatureCount], new float[decoder.FeatureCount]);
        Assert.Throws<ArgumentException>(() => DeadLetter.ForDecodeFailure(ok, "press", "events", 0, 7, s_received, payload));
    }

    [Fact]
    public void EveryDecodeErrorCodeIsAValidReason()
    {
        foreach (var error in Enum.GetValues<EventDecodeError>().Where(e => e != EventDecodeError.None))
            AssertValid(Letter([], reason: EventDecodeResult.CodeOf(error)).ToUtf8());
    }

    [Theory]
    [InlineData("WrongType")]
    [InlineData("wrong-type")]
    [InlineData("")]
    [InlineData("_x")]
    public void ReasonsMustBeSnakeCase(string reason) =>
        Assert.Throws<ArgumentException>(() => Letter([], reason: reason));

    [Fact]
    public void InvalidCoordinatesAreCallerErrors()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new DeadLetter("x", "m", "d", "t", -1, 0, s_received, default));
        Assert.Throws<ArgumentOutOfRangeException>(() => new DeadLetter("x", "m", "d", "t", 0, -1, s_received, default));
        Assert.Throws<ArgumentException>(() => new DeadLetter("x", "m", " ", "t", 0, 0, s_received, default));
        Assert.Throws<ArgumentOutOfRangeException>(() => new DeadLetter("x", "m", "d", "t", 0, 0, s_received, new byte[3], payloadLength: 2));
    }

    [Theory]
    [InlineData("{")]
    [InlineData("[]")]
    [InlineData("""{"reason": "x"}""")]
    [InlineData("""{"reason":"x","message":"m","detector":"d","topic":"t","partition":0,"offset":0,"received_at":"2024-05-01T00:00:00Z","payload_length":1,"payload_truncated":false,"payload_base64":"!!"}""")]
    [InlineData("""{"reason":"x","message":"m","detector":"d","topic":"t","partition":"0","offset":0,"received_at":"2024-05-01T00:00:00Z","payload_length":0,"payload_truncated":false,"payload_base64":""}""")]
    [InlineData("""{"reason":"x","message":"m","detector":"d","topic":"t","partition":0,"offset":0,"received_at":"yesterday","payload_length":0,"payload_truncated":false,"payload_base64":""}""")]
    [InlineData("""{"reason":"x","message":"m","detector":"d","topic":"t","partition":0,"offset":0,"received_at":"2024-05-01T00:00:00Z","payload_length":5,"payload_truncated":false,"payload_base64":""}""")]
    [InlineData("""{"reason":"X","message":"m","detector":"d","topic":"t","partition":0,"offset":0,"received_at":"2024-05-01T00:00:00Z","payload_length":0,"payload_truncated":false,"payload_base64":""}""")]
    [InlineData("""{"reason":"x","message":"\ud800","detector":"d","topic":"t","partition":0,"offset":0,"received_at":"2024-05-01T00:00:00Z","payload_length":0,"payload_truncated":false,"payload_base64":""}""")]
    public void ParseRejectsWhatIsNotAnEnvelope(string json) =>
        Assert.Throws<FormatException>(() => DeadLetter.Parse(Encoding.UTF8.GetBytes(json)));

    [Theory]
    [InlineData("partition", "-1")]
    [InlineData("offset", "1.5")]
    [InlineData("reason", "\"Wrong\"")]
    [InlineData("received_at", "\"2024-05-01T12:00:00+02:00\"")]
    [InlineData("payload_base64", "\"abc\"")]
    [InlineData("topic", "\"  \"")]
    [InlineData("extra", "1")]
    public void SchemaRejectsBrokenEnvelopes(string field, string value)
    {
        var node = System.Text.Json.Nodes.JsonNode.Parse(Letter([1, 2]).ToUtf8())!.AsObject();
        node[field] = System.Text.Json.Nodes.JsonNode.Parse(value);
        using var document = JsonDocument.Parse(node.ToJsonString());
        Assert.NotEmpty(s_schema.Validate(document.RootElement));
    }
}
