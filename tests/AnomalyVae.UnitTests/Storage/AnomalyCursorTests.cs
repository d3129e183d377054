using AnomalyVae.Api;
using AnomalyVae.Storage;

namespace AnomalyVae.UnitTests.Storage;

public sealed class AnomalyCursorTests
{
    [Fact]
    public void Round_trips_microsecond_times_and_ids()
    {
        var random = new Random(4);
        for (var i = 0; i < 1000; i++)
        {
            var micros = random.NextInt64(-62_135_596_800_000_000, 253_402_300_799_999_999);
            var cursor = new AnomalyCursor(DateTimeOffset.UnixEpoch.AddTicks(micros * 10), random.NextInt64(0, long.MaxValue));
            var text = cursor.Encode();
            Assert.Equal(23, text.Length);
            Assert.DoesNotContain('+', text);
            Assert.DoesNotContain('/', text);
            Assert.True(AnomalyCursor.TryDecode(text, out var back));
            Assert.Equal(cursor, back);
        }
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("abc")]
    [InlineData("AQAAAAAAAAAAAAAAAAAAAAA=")]
    [InlineData("AgAAAAAAAAAAAAAAAAAAAAA")]
    [InlineData("AQAAAAAAAAAAAAAAAAAAAAB")]
    [InlineData("AQAAAAAAAAAA__________8")]
    [InlineData("AQAAAAAAAAAAAAAAAAAAAA/")]
    [InlineData("AQAAAAAAAAAAAAAAAAAA A")]
    [InlineData("' OR '1'='1' --AAAAAAAA")]
    public void Rejects_anything_but_a_canonical_cursor(string? text)
    {
        Assert.False(AnomalyCursor.TryDecode(text, out var cursor));
        Assert.Null(cursor);
    }

    [Fact]
    public void Api_keys_match_exactly_and_are_identified_without_revealing_them()
    {
        var keys = new ApiKeys(["alpha-secret", "  ", "beta-secret"]);
        Assert.True(keys.AnyConfigured);
        var id = keys.Identify("alpha-secret");
        Assert.NotNull(id);
        Assert.Equal("api-key:#0", id); // its position: without Api:KeyIdSecret no digest of the key is shown
        Assert.Matches("^api-key:[0-9a-f]{8}$", new ApiKeys(["alpha-secret"], idSecret: "server-secret").Identify("alpha-secret"));
        Assert.NotEqual(id, keys.Identify("beta-secret"));
        Assert.Null(keys.Identify("alpha-secre"));
        Assert.Null(keys.Identify(""));
        Assert.Null(keys.Identify(null));
        Assert.False(new ApiKeys([]).AnyConfigured);
        Assert.Null(new ApiKeys([]).Identify("alpha-secret"));
    }
}
