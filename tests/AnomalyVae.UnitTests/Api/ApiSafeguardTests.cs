using System.Security.Cryptography;
using System.Text;
using AnomalyVae.Api;
using AnomalyVae.Storage;

namespace AnomalyVae.UnitTests.Api;

/// <summary>The API's pure safeguards: key identities, the reads-need-a-key default, quoting, strict times, detector names.</summary>
public sealed class ApiSafeguardTests
{
    [Fact]
    public void Keys_are_identified_by_name_by_HMAC_under_the_secret_or_by_position_never_by_a_plain_digest()
    {
        var named = new ApiKeys(["k1", "k2"], new Dictionary<string, string> { ["ops"] = "k3" });
        Assert.Equal("api-key:ops", named.Identify("k3"));
        Assert.Equal("api-key:#0", named.Identify("k1"));
        Assert.Equal("api-key:#1", named.Identify(" k2 "));
        Assert.Null(named.Identify("k4"));
        Assert.Null(named.Identify(""));

        var salted = new ApiKeys(["k1"], idSecret: "s");
        var expected = Convert.ToHexStringLower(HMACSHA256.HashData("s"u8, "k1"u8).AsSpan(0, 4));
        Assert.Equal("api-key:" + expected, salted.Identify("k1"));
        Assert.NotEqual("api-key:" + Convert.ToHexStringLower(SHA256.HashData("k1"u8).AsSpan(0, 4)), salted.Identify("k1"));
        Assert.NotEqual(salted.Identify("k1"), new ApiKeys(["k1"], idSecret: "other").Identify("k1"));
        Assert.False(new ApiKeys([" ", ""]).AnyConfigured);
    }

    [Theory]
    [InlineData("localhost", null, false)]
    [InlineData("127.0.0.1", null, false)]
    [InlineData("::1", null, false)]
    [InlineData("[::1]", null, false)]
    [InlineData("0.0.0.0", null, true)]
    [InlineData("*", null, true)]
    [InlineData("10.1.2.3", null, true)]
    [InlineData("0.0.0.0", false, false)]
    [InlineData("localhost", true, true)]
    public void Reads_need_a_key_unless_configured_otherwise_or_on_loopback(string host, bool? configured, bool expected) =>
        Assert.Equal(expected, new ApiOptions { Host = host, RequireKeyForReads = configured }.ReadsNeedKey);

    [Fact]
    public void Allowed_hosts_default_to_loopback_names()
    {
        Assert.Equal(["localhost", "127.0.0.1", "[::1]"], new ApiOptions().EffectiveAllowedHosts);
        Assert.Equal(["a.example"], new ApiOptions { AllowedHosts = [" a.example ", ""] }.EffectiveAllowedHosts);
    }

    [Fact]
    public void Quotes_show_a_short_prefix_with_control_characters_escaped()
    {
        Assert.Equal("'abc'", AnomalyApi.Quote("abc"));
        Assert.Equal("'a\\u000ab'", AnomalyApi.Quote("a\nb"));
        var quoted = AnomalyApi.Quote(new string('x', 5000));
        Assert.Equal($"'{new string('x', AnomalyApi.QuotedPrefixLength)}'… (5000 characters)", quoted);
    }

    [Theory]
    [InlineData("2026-01-31T12:00:00Z", true)]
    [InlineData("2026-01-31T12:00:00.5+01:00", true)]
    [InlineData("2026-01-31T12:00Z", true)]
    [InlineData("2026-01-31", true)]
    [InlineData("Jan 1 2020", false)]
    [InlineData("12:00", false)]
    [InlineData("2026-01-31 12:00:00", false)]
    [InlineData("31/01/2026", false)]
    [InlineData("2026-01-31T12:00:00Z\n", false)]
    public void Times_parse_as_strict_ISO_8601(string text, bool valid) =>
        Assert.Equal(valid, AnomalyApi.TryParseIsoTime(text, out _));

    [Theory]
    [InlineData("sensors", true)]
    [InlineData("a.b_c-1", true)]
    [InlineData("sensors\n", false)]
    [InlineData("sensors\r\n", false)]
    [InlineData("", false)]
    [InlineData("sens ors", false)]
    public void Detector_names_end_at_the_end_of_the_text(string name, bool valid) =>
        Assert.Equal(valid, ModelRegistry.IsDetectorName(name));

    [Fact]
    public void An_unreachable_database_is_told_apart_from_a_bug()
    {
        Assert.True(AnomalyApi.IsDatabaseUnavailable(new Npgsql.NpgsqlException("down", new System.Net.Sockets.SocketException(111))));
        Assert.True(AnomalyApi.IsDatabaseUnavailable(new InvalidOperationException("wrapped", new TimeoutException())));
        Assert.False(AnomalyApi.IsDatabaseUnavailable(new InvalidOperationException("a bug")));
        Assert.False(AnomalyApi.IsDatabaseUnavailable(new Npgsql.NpgsqlException("a bug")));
    }
}
