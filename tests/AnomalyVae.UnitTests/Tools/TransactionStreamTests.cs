using AnomalyVae.Tests;
using AnomalyVae.Tools;

using static AnomalyVae.Tools.TransactionStream;

namespace AnomalyVae.UnitTests.Tools;

public class TransactionStreamTests(TransactionStreamTests.Stream stream) : IClassFixture<TransactionStreamTests.Stream>
{
    private List<GeneratedEvent> Events => stream.Events;

    private List<GeneratedEvent> Normal => [.. Events.Where(e => e.Label == 0)];

    /// <summary>An account's home: the country of most of its normal payments.</summary>
    private Dictionary<int, string> Home => Normal
        .GroupBy(e => e.Entity)
        .ToDictionary(g => g.Key, g => g.GroupBy(e => e.Texts[CountryColumn]).OrderByDescending(c => c.Count()).First().Key);

    private static string Channel(GeneratedEvent e) => e.Texts[ChannelColumn];

    [Fact]
    public void NormalPaymentsFollowTheAccountsHabits()
    {
        var normal = Normal;
        var home = Home;
        Assert.True(normal.Count(e => e.Texts[CountryColumn] == home[e.Entity]) > 0.97 * normal.Count, "most payments are made at home");

        // Daytime at home, rarely at night.
        var night = normal.Count(e => e[HourColumn] is >= 1 and < 5) / (double)normal.Count;
        var day = normal.Count(e => e[HourColumn] is >= 10 and < 18) / (double)normal.Count;
        Assert.True(night < 0.03 && day > 0.4, $"night share {night:P1}, day share {day:P1}");

        // Amounts follow the account's scale.
        var card = normal.Where(e => Channel(e) != Atm).ToList();
        var corr = GeneratedEvents.Correlation([.. card.Select(e => Math.Log(e[AmountColumn]))], [.. card.Select(e => Math.Log(e[AverageAmountColumn]))]);
        Assert.True(corr > 0.3, $"corr(log amount, log account average) = {corr:F3}");

        // Known devices, round ATM cash, all three channels.
        var online = normal.Where(e => Channel(e) == Online).ToList();
        Assert.InRange(online.Average(e => e[DeviceNewColumn]), 0.001, 0.03);
        Assert.All(normal.Where(e => e[DeviceNewColumn] == 1), e => Assert.Equal(Online, Channel(e)));
        Assert.All(normal.Where(e => Channel(e) == Atm), e =>
        {
            Assert.Equal("cash", e.Texts[MerchantCategoryColumn]);
            Assert.Equal(0, e[AmountColumn] % 20);
        });
        Assert.Equal([Atm, Online, Pos], normal.Select(Channel).Distinct().Order());
    }

    [Fact]
    public void HourIsTheLocalHourAtHome()
    {
        // Each account's hour differs from the UTC hour by one fixed offset (its home time zone).
        foreach (var account in Events.GroupBy(e => e.Entity).Take(500))
        {
            Assert.Single(account.Select(e => ((int)e[HourColumn] - DateTime.UnixEpoch.AddMilliseconds(e.UnixMs).Hour + 24) % 24).Distinct());
        }
    }

    [Fact]
    public void HistoryFeaturesDescribeThePreviousPayments()
    {
        foreach (var account in Events.GroupBy(e => e.Entity).Take(2000).Select(g => g.ToList()))
        {
            for (var i = 1; i < account.Count; i++)
            {
                var (before, now) = (account[i - 1], account[i]);
                Assert.Equal(Math.Round((now.UnixMs - before.UnixMs) / 60_000.0, 1), now[MinutesSinceLastColumn], 6);
                var average = before[AverageAmountColumn] + (0.1 * (before[AmountColumn] - before[AverageAmountColumn]));
                Assert.Equal(average, now[AverageAmountColumn], 0.011); // both sides rounded to cents
            }

            for (var i = 0; i < account.Count; i++)
            {
                var e = account[i];
                // The ratio uses the unrounded running mean, the printed one is rounded to cents: allow for both.
                var tolerance = 1.01 * (0.0005 + (0.005 * e[AmountColumn] / (e[AverageAmountColumn] * e[AverageAmountColumn])));
                Assert.Equal(e[AmountColumn] / e[AverageAmountColumn], e[AmountToAverageColumn], tolerance);
                Assert.Equal(account.Take(i).Count(p => p.UnixMs > e.UnixMs - 3_600_000), e[PaymentsLastHourColumn]);
            }
        }
    }

    [Fact]
    public void ForeignCountryMarksPaymentsOutsideTheHomeCountry()
    {
        var home = Home;
        Assert.All(Events.Where(e => home.ContainsKey(e.Entity)), e =>
            Assert.Equal(e.Texts[CountryColumn] == home[e.Entity] ? 0 : 1, e[ForeignCountryColumn]));
        var foreign = Normal.Average(e => e[ForeignCountryColumn]);
        Assert.InRange(foreign, 0.005, 0.03); // trips abroad, in store
    }

    [Fact]
    public void EachFraudKindShowsInItsOwnRow()
    {
        var home = Home;
        var fraud = Events.Where(e => e.Label == 1).ToList();
        Assert.All(fraud.Where(e => e.Kind == CardTesting), e => Assert.True(Channel(e) == Online && e[AmountColumn] < 3, $"{e}"));
        Assert.All(fraud.Where(e => e.Kind == UnusualAmount), e =>
            Assert.True(e[AmountColumn] >= 14 * e[AverageAmountColumn] && e[AmountToAverageColumn] >= 14, $"{e[AmountColumn]} is not unusual against {e[AverageAmountColumn]}"));
        Assert.All(fraud.Where(e => e.Kind == ForeignNewDevice), e =>
            Assert.True(Channel(e) == Online && e[DeviceNewColumn] == 1 && e[DistanceColumn] >= 2000 && e.Texts[CountryColumn] != home[e.Entity]
                && e[ForeignCountryColumn] == 1, $"{e}"));
        Assert.All(fraud.Where(e => e.Kind == OddHours), e => Assert.InRange(e[HourColumn], 1, 4));
    }

    [Fact]
    public void CardTestingComesInBurstsOnOneAccount()
    {
        var events = Events;
        var bursts = 0;
        for (var i = 0; i < events.Count; i++)
        {
            if (events[i].Kind != CardTesting)
                continue;
            var account = events[i].Entity;
            var length = events.Skip(i).TakeWhile(e => e.Kind == CardTesting && e.Entity == account).Count();
            if (i + length < events.Count)
            {
                bursts++;
                Assert.InRange(length, 5, 12);
                Assert.All(events.GetRange(i + 1, length - 1), e => Assert.True(e[MinutesSinceLastColumn] < 30, $"{e}"));
                // Each tiny payment is far below the account's usual amount, and the burst piles up in the last hour.
                Assert.All(events.GetRange(i, length), e => Assert.True(e[AmountToAverageColumn] < 0.5, $"{e}"));
                Assert.True(events[i + length - 1][PaymentsLastHourColumn] >= length - 1, $"{events[i + length - 1]}");
            }

            i += length - 1;
        }

        Assert.True(bursts > 20, $"only {bursts} bursts");
    }

    /// <summary>One stream shared by the tests of this class (generated once, released after them; the tests only read it).</summary>
    public sealed class Stream : IDisposable
    {
        internal List<GeneratedEvent> Events { get; } = GeneratedEvents.Take(new TransactionStream(seed: 1), 300_000);

        public void Dispose() => GeneratedEvents.Release(Events);
    }
}
