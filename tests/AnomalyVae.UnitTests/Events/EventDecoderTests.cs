using System.Text;
using System.Text.Json;
using AnomalyVae.Events;
using AnomalyVae.Model;

namespace AnomalyVae.UnitTests.Events;

public class EventDecoderTests
{
    // Model order: temp, bytes, status, door, code.
    private const int Temp = 0;
    private const int Bytes = 1;
    private const int Status = 2;
    private const int Door = 3;
    private const int Code = 4;

    internal static readonly FeatureSchema Schema = new(
    [
        FittedFeature.Numeric("temp", 20, 2),
        FittedFeature.Numeric("bytes", 5, 1, log: true),
        FittedFeature.Categorical("status", ["ok", "warn", "fail"]),
        FittedFeature.Binary("door"),
        FittedFeature.Categorical("code", ["3", "7"]),
    ]);

    private static readonly EventDecoder s_decoder = new(Schema, entityField: "machine_id", timeField: "ts");

    private static (EventDecodeResult Result, float[] X, float[] Mask) Decode(string json, EventDecoder? decoder = null) =>
        Decode(Encoding.UTF8.GetBytes(json), decoder);

    private static (EventDecodeResult Result, float[] X, float[] Mask) Decode(byte[] payload, EventDecoder? decoder = null)
    {
        decoder ??= s_decoder;
        var x = Enumerable.Repeat(99f, decoder.FeatureCount).ToArray();
        var mask = Enumerable.Repeat(99f, decoder.FeatureCount).ToArray();
        var result = decoder.Decode(payload, x, mask);
        return (result, x, mask);
    }

    private static EventDecodeResult AssertFails(string json, EventDecodeError error, EventDecoder? decoder = null)
    {
        var (result, x, mask) = Decode(json, decoder);
        Assert.False(result.IsSuccess, $"expected {error} for {json}");
        Assert.Equal(error, result.Error);
        Assert.NotEmpty(result.Message);
        Assert.All(x, v => Assert.Equal(0f, v));
        Assert.All(mask, v => Assert.Equal(0f, v));
        return result;
    }

    [Fact]
    public void DecodesEveryKindEntityAndTime()
    {
        const string json = """
            {"temp": 21.5, "bytes": "1e3", "status": "warn", "door": true, "code": 7,
             "machine_id": "m-1", "ts": "2024-05-01T12:00:00Z", "extra": {"nested": [1, {"a": null}]}}
            """;
        var payload = Encoding.UTF8.GetBytes(json);
        var (result, x, mask) = Decode(payload);
        Assert.True(result.IsSuccess, result.ToString());
        Assert.Equal([21.5f, 1000f, 2f, 1f, 2f], x);
        Assert.Equal([1f, 1f, 1f, 1f, 1f], mask);
        Assert.Equal(5, result.PresentFeatures);
        Assert.Equal("m-1", result.Entity.GetString(payload));
        Assert.Equal(new DateTimeOffset(2024, 5, 1, 12, 0, 0, TimeSpan.Zero), result.EventTime);
        Assert.Equal("none", result.Code);
        Assert.Equal("", result.Message);
    }

    [Fact]
    public void AbsentAndNullFeaturesAreMissingAndTheRowIsOverwritten()
    {
        var (result, x, mask) = Decode("""{"temp": null, "status": "ok"}""");
        Assert.True(result.IsSuccess, result.ToString());
        Assert.Equal([0f, 0f, 1f, 0f, 0f], x);
        Assert.Equal([0f, 0f, 1f, 0f, 0f], mask);
        Assert.Equal(1, result.PresentFeatures);
        Assert.False(result.Entity.IsPresent);
        Assert.Null(result.EventTime);

        var (empty, _, emptyMask) = Decode("{}");
        Assert.True(empty.IsSuccess);
        Assert.Equal(0, empty.PresentFeatures);
        Assert.All(emptyMask, v => Assert.Equal(0f, v));
    }

    [Theory]
    [InlineData("\"warn\"", 2f)]
    [InlineData("\" fail \"", 3f)] // trimmed, as CSV cells are
    [InlineData("\"never-seen\"", 0f)] // unknown bucket, present
    [InlineData("\"OK\"", 0f)] // ordinal: case matters for categories
    [InlineData("\"w\\u0061rn\"", 2f)] // escapes resolved
    [InlineData("3", 0f)] // a number looked up as text: "3" is not in status' vocabulary
    [InlineData("true", 0f)]
    public void CategoricalValuesAreVocabularyIndexes(string value, float expected)
    {
        var (result, x, mask) = Decode($$"""{"status": {{value}}}""");
        Assert.True(result.IsSuccess, result.ToString());
        Assert.Equal(expected, x[Status]);
        Assert.Equal(1f, mask[Status]);
    }

    [Theory]
    [InlineData("7", 2f)]
    [InlineData("7.0", 2f)] // shortest round-trip text: 7.0 → "7"
    [InlineData("\"3\"", 1f)]
    [InlineData("3e0", 1f)]
    [InlineData("1e400", 0f)] // beyond double range: matches nothing seen in training
    [InlineData("4", 0f)]
    public void CategoricalNumbersAreLookedUpByTheirText(string value, float expected)
    {
        var (result, x, mask) = Decode($$"""{"code": {{value}}}""");
        Assert.True(result.IsSuccess, result.ToString());
        Assert.Equal(expected, x[Code]);
        Assert.Equal(1f, mask[Code]);
    }

    [Theory]
    [InlineData("\"NA\"")]
    [InlineData("\"\"")]
    [InlineData("\" null \"")]
    [InlineData("null")]
    public void MissingTokensAreMissingForStrings(string value)
    {
        foreach (var field in new[] { "temp", "status", "door" })
        {
            var (result, _, mask) = Decode($$"""{"{{field}}": {{value}}}""");
            Assert.True(result.IsSuccess, result.ToString());
            Assert.All(mask, v => Assert.Equal(0f, v));
        }
    }

    [Theory]
    [InlineData("true", 1f)]
    [InlineData("false", 0f)]
    [InlineData("1", 1f)]
    [InlineData("0", 0f)]
    [InlineData("1.0", 1f)]
    [InlineData("\"yes\"", 1f)]
    [InlineData("\" N \"", 0f)]
    [InlineData("\"TRUE\"", 1f)] // binary tokens are case-insensitive
    public void BinaryAcceptsBooleansZeroOneAndTokens(string value, float expected)
    {
        var (result, x, mask) = Decode($$"""{"door": {{value}}}""");
        Assert.True(result.IsSuccess, result.ToString());
        Assert.Equal(expected, x[Door]);
        Assert.Equal(1f, mask[Door]);
    }

    [Theory]
    [InlineData("2")]
    [InlineData("-1")]
    [InlineData("0.5")]
    [InlineData("\"maybe\"")]
    [InlineData("{}")]
    [InlineData("[true]")]
    public void BinaryRejectsOtherValues(string value)
    {
        var result = AssertFails($$"""{"door": {{value}}}""", EventDecodeError.WrongType);
        Assert.Equal(Door, result.Feature);
        Assert.Contains("'door'", result.Message);
        Assert.Contains("yes", result.Message); // names the accepted tokens
    }

    [Theory]
    [InlineData("12.5", 12.5f)]
    [InlineData("-3", -3f)]
    [InlineData("\"12.5\"", 12.5f)]
    [InlineData("\" -1e3 \"", -1000f)]
    [InlineData("1e15", 1e15f)]
    [InlineData("-1e15", -1e15f)]
    [InlineData("1e-400", 0f)] // underflows to 0: finite and in range
    [InlineData("true", 1f)]
    [InlineData("false", 0f)]
    public void NumericAcceptsNumbersNumericStringsAndBooleans(string value, float expected)
    {
        var (result, x, mask) = Decode($$"""{"temp": {{value}}}""");
        Assert.True(result.IsSuccess, result.ToString());
        Assert.Equal(expected, x[Temp]);
        Assert.Equal(1f, mask[Temp]);
    }

    [Theory]
    [InlineData("\"abc\"", EventDecodeError.WrongType)]
    [InlineData("\"12,5\"", EventDecodeError.WrongType)]
    [InlineData("{\"v\": 1}", EventDecodeError.WrongType)]
    [InlineData("[1]", EventDecodeError.WrongType)]
    [InlineData("\"NaN\"", EventDecodeError.NotFinite)]
    [InlineData("\" nan \"", EventDecodeError.NotFinite)]
    [InlineData("\"Infinity\"", EventDecodeError.NotFinite)]
    [InlineData("\"-inf\"", EventDecodeError.NotFinite)]
    [InlineData("1e400", EventDecodeError.NotFinite)]
    [InlineData("-1e400", EventDecodeError.NotFinite)]
    [InlineData("1.0000001e15", EventDecodeError.OutOfRange)]
    [InlineData("-2e15", EventDecodeError.OutOfRange)]
    [InlineData("\"3e38\"", EventDecodeError.OutOfRange)]
    public void NumericRejectsWrongTypesNonFiniteAndOutOfRange(string value, EventDecodeError error)
    {
        var json = $$"""{"status": "ok", "bytes": {{value}}}""";
        var result = AssertFails(json, error);
        Assert.Equal(Bytes, result.Feature);
        Assert.Equal(json.IndexOf(value, StringComparison.Ordinal), result.Position);
        Assert.Contains("'bytes'", result.Message);
    }

    [Fact]
    public void OutOfRangeLimitIsADocumentedConstant()
    {
        Assert.Equal(1e15, EventDecoder.MaxAbsNumericValue);
        var result = AssertFails("""{"temp": 1e16}""", EventDecodeError.OutOfRange);
        Assert.Contains("1E+15", result.Message);
    }

    [Fact]
    public void UnknownFieldsAreIgnoredWhateverTheyHold()
    {
        var (result, x, mask) = Decode("""
            {"a": {"temp": 5, "b": [1, [2, [3, {"c": "d"}]], {}], "e": []}, "temp": 7, "f": "NaN", "g": true,
             "h": null, "i": 1e999, "status_": "x", "Temp": 9, "temp ": 10, "a": 1}
            """);
        Assert.True(result.IsSuccess, result.ToString());
        Assert.Equal(7f, x[Temp]);
        Assert.Equal(1, result.PresentFeatures);
        Assert.Equal(1f, mask[Temp]);
    }

    [Fact]
    public void EscapedNamesMatchFeatures()
    {
        var (result, x, _) = Decode("""{"te\u006dp": 3, "\u0073tatus": "fail"}""");
        Assert.True(result.IsSuccess, result.ToString());
        Assert.Equal(3f, x[Temp]);
        Assert.Equal(3f, x[Status]);
    }

    [Fact]
    public void NamesMatchOnTheirUtf8BytesOrTheirEscapes()
    {
        // Enough features that the decoder's name table has collisions to probe past; one non-ASCII name, one name
        // that is also the entity field, and names that are prefixes of each other.
        var features = Enumerable.Range(0, 40).Select(i => FittedFeature.Numeric($"f{i}", 0, 1)).ToList();
        features.Add(FittedFeature.Numeric("température", 0, 1));
        features.Add(FittedFeature.Categorical("machine", ["m1", "m2"]));
        var decoder = new EventDecoder(new FeatureSchema(features), entityField: "machine", timeField: "f3");
        var (result, x, mask) = Decode("""{"f1": 1, "f10": 10, "f39": 39, "f4": null, "température": 2.5, "f": 7, "f100": 8, "machine": "m2", "f3": 5}""", decoder);
        Assert.True(result.IsSuccess, result.ToString());
        Assert.Equal((1f, 10f, 39f, 2.5f, 2f, 5f), (x[1], x[10], x[39], x[40], x[41], x[3]));
        Assert.Equal(6, mask.Count(m => m == 1));
        var payload = Encoding.UTF8.GetBytes("""{"machine": "m2", "f3": 5}""");
        var both = decoder.Decode(payload, new float[42], new float[42]);
        Assert.Equal("m2", both.Entity.GetString(payload));
        Assert.Equal(DateTimeOffset.FromUnixTimeMilliseconds(5), both.EventTime);

        var (escaped, ex, _) = Decode("""{"temp\u00e9rature": 2.5, "m\u0061chine": "m1"}""", decoder);
        Assert.True(escaped.IsSuccess, escaped.ToString());
        Assert.Equal((2.5f, 1f), (ex[40], ex[41]));
        Assert.Equal(EventDecodeError.DuplicateKey, Decode("""{"température": 1, "temp\u00e9rature": 1}""", decoder).Result.Error);
        Assert.Equal(EventDecodeError.DuplicateKey, Decode("""{"machine": "m1", "m\u0061chine": "m1"}""", decoder).Result.Error);
    }

    [Theory]
    [InlineData("""{"temp": 1, "temp": 2}""", Temp)]
    [InlineData("""{"temp": 1, "te\u006dp": 1}""", Temp)]
    [InlineData("""{"door": null, "door": true}""", Door)]
    [InlineData("""{"machine_id": "a", "x": 1, "machine_id": "a"}""", -1)]
    [InlineData("""{"ts": 0, "ts": null}""", -1)]
    public void DuplicateFeatureEntityOrTimeKeysAreErrors(string json, int feature)
    {
        var result = AssertFails(json, EventDecodeError.DuplicateKey);
        Assert.Equal(feature, result.Feature);
        Assert.Contains("more than once", result.Message);
    }

    [Fact]
    public void DuplicateIgnoredKeysAreFine()
    {
        var (result, x, _) = Decode("""{"x": 1, "x": {"y": 2}, "temp": 4}""");
        Assert.True(result.IsSuccess, result.ToString());
        Assert.Equal(4f, x[Temp]);
    }

    [Theory]
    [InlineData("\"2024-05-01T12:00:00Z\"", "2024-05-01T12:00:00+00:00")]
    [InlineData("\"2024-05-01T12:00:00.123Z\"", "2024-05-01T12:00:00.123+00:00")]
    [InlineData("\"2024-05-01T14:00:00+02:00\"", "2024-05-01T12:00:00+00:00")]
    [InlineData("\"2024-05-01T12:00:00\"", "2024-05-01T12:00:00+00:00")] // no offset → UTC
    [InlineData("\"2024-05-01\"", "2024-05-01T00:00:00+00:00")]
    [InlineData("\"2024-05-01T12:00:00\\u005A\"", "2024-05-01T12:00:00+00:00")]
    [InlineData("1714564800000", "2024-05-01T12:00:00+00:00")]
    [InlineData("1714564800123.9", "2024-05-01T12:00:00.123+00:00")]
    [InlineData("1.7145648e12", "2024-05-01T12:00:00+00:00")]
    [InlineData("-1", "1969-12-31T23:59:59.999+00:00")]
    public void EventTimeIsIsoOrEpochMillisecondsInUtc(string value, string expected)
    {
        var (result, _, _) = Decode($$"""{"ts": {{value}}}""");
        Assert.True(result.IsSuccess, result.ToString());
        Assert.Equal(DateTimeOffset.Parse(expected, System.Globalization.CultureInfo.InvariantCulture), result.EventTime);
        Assert.Equal(TimeSpan.Zero, result.EventTime!.Value.Offset);
    }

    [Theory]
    [InlineData("null")]
    [InlineData("\"\"")]
    public void NullOrEmptyEventTimeIsNoTime(string value)
    {
        var (result, _, _) = Decode($$"""{"ts": {{value}}}""");
        Assert.True(result.IsSuccess, result.ToString());
        Assert.Null(result.EventTime);
    }

    [Theory]
    [InlineData("\"yesterday\"")]
    [InlineData("\"2024-05-01 12:00:00\"")]
    [InlineData("\"2024-13-01T00:00:00Z\"")]
    [InlineData("\"1714564800000\"")]
    [InlineData("true")]
    [InlineData("{}")]
    [InlineData("[2024]")]
    [InlineData("1e20")]
    [InlineData("-1e300")]
    [InlineData("253402300800000")] // year 10000
    public void UnparseableEventTimeIsAnError(string value)
    {
        var json = $$"""{"temp": 1, "ts": {{value}}}""";
        var result = AssertFails(json, EventDecodeError.BadEventTime);
        Assert.Contains("'ts'", result.Message);
        Assert.Equal(json.IndexOf(value, StringComparison.Ordinal), result.Position);
    }

    [Fact]
    public void EntityIsARangeOfThePayload()
    {
        var payload = Encoding.UTF8.GetBytes("""{"temp": 1, "machine_id": "press-7"}""");
        var (result, _, _) = Decode(payload);
        Assert.True(result.IsSuccess, result.ToString());
        var entity = result.Entity;
        Assert.True(entity.IsPresent);
        Assert.True(entity.IsString);
        Assert.False(entity.IsEscaped);
        Assert.Equal("press-7", Encoding.UTF8.GetString(entity.RawUtf8(payload)));
        Assert.Equal("press-7", entity.GetString(payload));
        Span<char> buffer = stackalloc char[16];
        Assert.True(entity.TryCopyTo(payload, buffer, out var written));
        Assert.Equal("press-7", buffer[..written].ToString());
        Assert.False(entity.TryCopyTo(payload, buffer[..3], out _));
    }

    [Fact]
    public void EscapedEntityIsResolvedOnDemand()
    {
        var payload = Encoding.UTF8.GetBytes("""{"machine_id": "a\"b\\c\u00e9\ud83d\ude00"}""");
        var (result, _, _) = Decode(payload);
        Assert.True(result.IsSuccess, result.ToString());
        Assert.True(result.Entity.IsEscaped);
        const string expected = "a\"b\\cé😀";
        Assert.Equal(expected, result.Entity.GetString(payload));
        Span<char> exact = stackalloc char[expected.Length];
        Assert.True(result.Entity.TryCopyTo(payload, exact, out var written));
        Assert.Equal(expected, exact[..written].ToString());
        Assert.False(result.Entity.TryCopyTo(payload, exact[..^1], out _));
    }

    [Theory]
    [InlineData("42", "42")]
    [InlineData("1.50", "1.50")]
    [InlineData("-7e3", "-7e3")]
    public void NumericEntityKeepsItsText(string value, string expected)
    {
        var payload = Encoding.UTF8.GetBytes($$"""{"machine_id": {{value}}}""");
        var (result, _, _) = Decode(payload);
        Assert.True(result.IsSuccess, result.ToString());
        Assert.False(result.Entity.IsString);
        Assert.Equal(expected, result.Entity.GetString(payload));
    }

    [Theory]
    [InlineData("null")]
    [InlineData("\"\"")]
    public void NullOrEmptyEntityIsNoEntity(string value)
    {
        var payload = Encoding.UTF8.GetBytes($$"""{"machine_id": {{value}}}""");
        var (result, _, _) = Decode(payload);
        Assert.True(result.IsSuccess, result.ToString());
        Assert.False(result.Entity.IsPresent);
        Assert.Null(result.Entity.GetString(payload));
    }

    [Theory]
    [InlineData("true")]
    [InlineData("{\"id\": 1}")]
    [InlineData("[\"a\"]")]
    public void EntityOfAnotherTypeIsAnError(string value) =>
        Assert.Contains("'machine_id'", AssertFails($$"""{"machine_id": {{value}}}""", EventDecodeError.BadEntity).Message);

    [Fact]
    public void EntityLengthIsLimited()
    {
        var atLimit = new string('e', EventDecoder.MaxEntityBytes);
        Assert.True(Decode($$"""{"machine_id": "{{atLimit}}"}""").Result.IsSuccess);
        AssertFails($$"""{"machine_id": "{{atLimit}}x"}""", EventDecodeError.BadEntity);
    }

    [Fact]
    public void AFieldCanBeBothAFeatureAndTheEntity()
    {
        var decoder = new EventDecoder(Schema, entityField: "status");
        var payload = Encoding.UTF8.GetBytes("""{"status": "fail"}""");
        var (result, x, _) = Decode(payload, decoder);
        Assert.True(result.IsSuccess, result.ToString());
        Assert.Equal(3f, x[Status]);
        Assert.Equal("fail", result.Entity.GetString(payload));
        AssertFails("""{"status": "fail", "status": "ok"}""", EventDecodeError.DuplicateKey, decoder);
    }

    [Theory]
    [InlineData("")]
    [InlineData("   ")]
    [InlineData("{")]
    [InlineData("{\"temp\"")]
    [InlineData("{\"temp\":")]
    [InlineData("{\"temp\": 1,}")]
    [InlineData("{\"temp\": 1} {}")]
    [InlineData("{\"temp\": 1} x")]
    [InlineData("{'temp': 1}")]
    [InlineData("{\"temp\": NaN}")]
    [InlineData("{\"temp\": 01}")]
    [InlineData("{\"temp\": 1 // comment\n}")]
    [InlineData("{\"a\": \"\\x\"}")]
    [InlineData("{\"a\": \"\t\"}")]
    [InlineData("{\"a\": \"\\ud800\"}")] // lone surrogate in an ignored field
    [InlineData("{\"\\udc00\": 1}")] // lone surrogate in a name
    [InlineData("{\"machine_id\": \"\\ud800x\"}")]
    [InlineData("{\"status\": \"\\udfff\"}")]
    [InlineData("[1, 2")]
    public void MalformedJsonIsReported(string json) => AssertFails(json, EventDecodeError.MalformedJson);

    [Fact]
    public void EveryTruncationOfAnEventIsMalformed()
    {
        const string json = """{"temp":21.5,"status":"w\u0061rn","door":true,"x":[{"y":null}],"ts":"2024-05-01T12:00:00Z"}""";
        Assert.True(Decode(json).Result.IsSuccess);
        for (var length = 0; length < json.Length; length++)
            AssertFails(json[..length], EventDecodeError.MalformedJson);
    }

    [Fact]
    public void InvalidUtf8IsMalformedWithItsOffset()
    {
        var payload = Encoding.UTF8.GetBytes("""{"x": "ab", "temp": 1}""");
        payload[8] = 0xFF;
        var (result, _, _) = Decode(payload);
        Assert.Equal(EventDecodeError.MalformedJson, result.Error);
        Assert.Equal(8, result.Position);
        Assert.Contains("UTF-8", result.Message);

        var truncatedSequence = Encoding.UTF8.GetBytes("""{"x": "é"}""")[..8];
        Assert.Equal(EventDecodeError.MalformedJson, Decode(truncatedSequence).Result.Error);
    }

    [Fact]
    public void ByteOrderMarkIsSkippedAndPositionsCountIt()
    {
        var payload = (byte[])[0xEF, 0xBB, 0xBF, .. Encoding.UTF8.GetBytes("""{"temp": "x"}""")];
        var (result, _, _) = Decode(payload);
        Assert.Equal(EventDecodeError.WrongType, result.Error);
        Assert.Equal(12, result.Position);
        Assert.True(Decode([0xEF, 0xBB, 0xBF, .. "{\"temp\":1}"u8]).Result.IsSuccess);
    }

    [Theory]
    [InlineData("[{\"temp\": 1}]")]
    [InlineData("1")]
    [InlineData("\"temp\"")]
    [InlineData("null")]
    [InlineData("true")]
    public void TopLevelMustBeAnObject(string json) => AssertFails(json, EventDecodeError.NotAnObject);

    [Fact]
    public void OversizedIsCheckedBeforeParsing()
    {
        var decoder = new EventDecoder(Schema, maxPayloadBytes: 16);
        Assert.True(Decode("""{"temp": 123456}""", decoder).Result.IsSuccess); // exactly 16 bytes
        var result = AssertFails("""{"temp": 1234567}""", EventDecodeError.Oversized, decoder);
        Assert.Contains("17 bytes", result.Message);
        AssertFails("{{{{{{{{{{{{{{{{{{{{{{{{", EventDecodeError.Oversized, decoder); // malformed too, but never parsed
    }

    [Fact]
    public void NestingDepthIsLimited()
    {
        var decoder = new EventDecoder(Schema, maxDepth: 3);
        Assert.True(Decode("""{"a": {"b": [1]}, "temp": 1}""", decoder).Result.IsSuccess);
        var result = AssertFails("""{"a": {"b": [[1]]}, "temp": 1}""", EventDecodeError.TooDeep, decoder);
        Assert.Equal(13, result.Position);
        AssertFails("""{"temp": {"b": {"c": {}}}}""", EventDecodeError.TooDeep, decoder);
        AssertFails("""[[[[1]]]]""", EventDecodeError.TooDeep, decoder);

        var deep = "{\"a\": " + new string('[', 100) + new string(']', 100) + "}";
        AssertFails(deep, EventDecodeError.TooDeep);
        var justDeepEnough = "{\"a\": " + new string('[', EventDecoder.DefaultMaxDepth - 1) + new string(']', EventDecoder.DefaultMaxDepth - 1) + "}";
        Assert.True(Decode(justDeepEnough).Result.IsSuccess);
    }

    [Fact]
    public void StructuralErrorsWinOverValueErrors()
    {
        AssertFails("""{"temp": "abc", "x": [1,}""", EventDecodeError.MalformedJson);
        AssertFails("""{"temp": "abc", "x": "\udc00"}""", EventDecodeError.MalformedJson);
        AssertFails("{\"temp\": \"abc\", \"x\": " + new string('[', 100) + new string(']', 100) + "}", EventDecodeError.TooDeep);
        // Among value errors the first one is reported.
        var result = AssertFails("""{"door": 2, "temp": "abc"}""", EventDecodeError.WrongType);
        Assert.Equal(Door, result.Feature);
    }

    [Fact]
    public void ErrorCodesAreStableSnakeCase()
    {
        var expected = new Dictionary<EventDecodeError, (int Value, string Code)>
        {
            [EventDecodeError.None] = (0, "none"),
            [EventDecodeError.MalformedJson] = (1, "malformed_json"),
            [EventDecodeError.NotAnObject] = (2, "not_an_object"),
            [EventDecodeError.WrongType] = (3, "wrong_type"),
            [EventDecodeError.NotFinite] = (4, "not_finite"),
            [EventDecodeError.OutOfRange] = (5, "out_of_range"),
            [EventDecodeError.Oversized] = (6, "oversized"),
            [EventDecodeError.DuplicateKey] = (7, "duplicate_key"),
            [EventDecodeError.BadEventTime] = (8, "bad_event_time"),
            [EventDecodeError.BadEntity] = (9, "bad_entity"),
            [EventDecodeError.TooDeep] = (10, "too_deep"),
        };
        Assert.Equal(expected.Keys.Order(), Enum.GetValues<EventDecodeError>().Order());
        foreach (var (error, (value, code)) in expected)
        {
            Assert.Equal(value, (int)error);
            Assert.Equal(code, EventDecodeResult.CodeOf(error));
            Assert.Matches("^[a-z][a-z0-9_]*$", code);
        }
    }

    [Fact]
    public void WrongRowLengthIsACallerError()
    {
        Assert.Throws<ArgumentException>(() => s_decoder.Decode("{}"u8, new float[4], new float[5]));
        Assert.Throws<ArgumentException>(() => new EventDecoder(Schema, entityField: "id", timeField: "id"));
        Assert.Throws<ArgumentException>(() => new EventDecoder(Schema, entityField: " "));
        Assert.Throws<ArgumentOutOfRangeException>(() => new EventDecoder(Schema, maxDepth: 0));
    }

    [Fact]
    public void WideSchemasAndLongNamesUsePooledScratch()
    {
        // More than 4030 features needs more seen-bits than the stack buffer; a 200-char name needs more name chars.
        var longName = new string('n', 200);
        var features = Enumerable.Range(0, 5000).Select(i => FittedFeature.Numeric($"f{i}", 0, 1)).Append(FittedFeature.Numeric(longName, 0, 1));
        var decoder = new EventDecoder(new FeatureSchema(features));
        var (result, x, mask) = Decode($$"""{"f4999": 3, "{{longName}}": 4, "f0": 1, "{{new string('n', 1300)}}": 5}""", decoder);
        Assert.True(result.IsSuccess, result.ToString());
        Assert.Equal(3f, x[4999]);
        Assert.Equal(4f, x[5000]);
        Assert.Equal(3, mask.Sum());
        AssertFails("""{"f4999": 3, "f4999": 3}""", EventDecodeError.DuplicateKey, decoder);
    }

    [Fact]
    public void BatchAppendsDecodedRowsOnly()
    {
        using var batch = new EventBatch(3, Schema.Count);
        string[] events = ["""{"temp": 1}""", """{"temp": "x"}""", """{"temp": 2, "door": "y"}""", "{", """{"status": "fail"}"""];
        var results = events.Select(e => s_decoder.Decode(Encoding.UTF8.GetBytes(e), batch)).ToArray();
        Assert.Equal([true, false, true, false, true], results.Select(r => r.IsSuccess));
        Assert.Equal(3, batch.Count);
        Assert.True(batch.IsFull);
        Assert.Equal(3 * Schema.Count, batch.X.Length);
        string[] decoded = [events[0], events[2], events[4]];
        for (var row = 0; row < 3; row++)
        {
            var (_, x, mask) = Decode(decoded[row]);
            Assert.Equal(x, batch.RowX(row).ToArray());
            Assert.Equal(mask, batch.RowMask(row).ToArray());
            Assert.Equal(x, batch.X.Slice(row * Schema.Count, Schema.Count).ToArray());
        }

        Assert.Throws<InvalidOperationException>(() => s_decoder.Decode("{}"u8, batch));
        Assert.Throws<ArgumentOutOfRangeException>(() => batch.RowX(3));
        batch.Clear();
        Assert.Equal(0, batch.Count);
        Assert.True(s_decoder.Decode("""{"temp": 9}"""u8, batch).IsSuccess);
        Assert.Equal(9f, batch.RowX(0)[Temp]);
        Assert.Throws<ArgumentException>(() => s_decoder.Decode("{}"u8, new EventBatch(1, 2)));
    }

    [Fact]
    public void SuccessfulDecodesMatchTheJsonDocumentReading()
    {
        // An independent reading of the same events through JsonDocument and FeatureSchema.TryEncode.
        var random = new Random(7);
        string[] values = ["1", "-2.5", "\"3\"", "true", "false", "null", "\"ok\"", "\"warn\"", "\"zzz\"", "0", "\"yes\"", "7", "\"NA\""];
        string[] fields = ["temp", "bytes", "status", "door", "code", "other"];
        for (var i = 0; i < 2000; i++)
        {
            var chosen = fields.OrderBy(_ => random.Next()).Take(random.Next(0, fields.Length + 1));
            var json = "{" + string.Join(",", chosen.Select(f => $"\"{f}\":{values[random.Next(values.Length)]}")) + "}";
            var (result, x, mask) = Decode(json);
            using var document = JsonDocument.Parse(json);
            var expectedX = new float[Schema.Count];
            var expectedMask = new float[Schema.Count];
            var ok = true;
            foreach (var property in document.RootElement.EnumerateObject())
            {
                var f = Schema.IndexOf(property.Name);
                if (f < 0)
                    continue;
                var v = property.Value;
                ok &= v.ValueKind switch
                {
                    JsonValueKind.Null => true,
                    JsonValueKind.True or JsonValueKind.False => Schema.TryEncode(f, v.GetBoolean(), out expectedX[f], out expectedMask[f]),
                    JsonValueKind.Number => Schema.TryEncode(f, v.GetDouble(), out expectedX[f], out expectedMask[f]),
                    _ => Schema.TryEncode(f, v.GetString(), out expectedX[f], out expectedMask[f]),
                };
            }

            Assert.True(ok == result.IsSuccess, $"{json}: {result}");
            if (ok)
            {
                Assert.Equal(expectedX, x);
                Assert.Equal(expectedMask, mask);
            }
        }
    }
}
