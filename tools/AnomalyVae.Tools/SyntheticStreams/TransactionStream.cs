namespace AnomalyVae.Tools;

/// <summary>
/// Card payments by a population of accounts, each event carrying the per-account history features a payments
/// pipeline computes upstream (so a model scoring one event at a time can see account-relative fraud), with injected
/// fraud (card_testing, unusual_amount, foreign_new_device, odd_hours) in about equal shares. The behaviour and each
/// kind: docs/cli.md#synthetic-streams.
/// </summary>
public sealed class TransactionStream : SyntheticStream
{
    /// <summary>Default fraction of fraudulent events (0.5%): fraud is rarer than machine faults.</summary>
    public const double DefaultAnomalyRate = 0.005;

    public const int DefaultAccounts = 10_000;

    /// <summary>Average payments per account per day; sets the stream's clock.</summary>
    public const double PaymentsPerAccountPerDay = 2;

    public const string CardTesting = "card_testing";
    public const string UnusualAmount = "unusual_amount";
    public const string ForeignNewDevice = "foreign_new_device";
    public const string OddHours = "odd_hours";

    public const string Pos = "pos";
    public const string Online = "online";
    public const string Atm = "atm";

    // Feature column indexes, in payload order.
    public const int AmountColumn = 0;
    public const int MerchantCategoryColumn = 1;
    public const int CountryColumn = 2;
    public const int ChannelColumn = 3;
    public const int HourColumn = 4;
    public const int DeviceNewColumn = 5;
    public const int DistanceColumn = 6;
    public const int AverageAmountColumn = 7;
    public const int MinutesSinceLastColumn = 8;
    public const int AmountToAverageColumn = 9;
    public const int PaymentsLastHourColumn = 10;
    public const int ForeignCountryColumn = 11;

    // Name and decimals (text columns: TextColumn).
    private static readonly (string, int)[] s_columns =
    [
        ("amount", 2), ("merchant_category", TextColumn), ("country", TextColumn), ("channel", TextColumn), ("hour", 0),
        ("device_new", 0), ("distance_from_home_km", 1), ("account_avg_amount", 2), ("minutes_since_last", 1),
        ("amount_to_avg", 3), ("payments_last_hour", 0), ("foreign_country", 0),
    ];

    private const long HourMs = 3_600_000;

    private static readonly string[] s_kinds = [CardTesting, UnusualAmount, ForeignNewDevice, OddHours];
    private const int CardTestingIndex = 0;
    private const int UnusualAmountIndex = 1;
    private const int ForeignNewDeviceIndex = 2;
    private const double MeanBurstLength = 8.5; // 5..12 uniform

    // Merchant categories with their amount factor relative to the account's scale.
    private const int Grocery = 0, Restaurant = 1, Fuel = 2, Retail = 3, Pharmacy = 4, Entertainment = 5, Utilities = 6,
        Electronics = 7, Travel = 8, DigitalGoods = 9, Cash = 10;

    private static readonly string[] s_categories =
        ["grocery", "restaurant", "fuel", "retail", "pharmacy", "entertainment", "utilities", "electronics", "travel", "digital_goods", "cash"];

    private static readonly double[] s_categoryAmountFactor = [1.2, 0.9, 1.5, 1.6, 0.7, 1.1, 2.5, 4.0, 6.0, 0.4, 1];

    // In-store categories (index = category) and online categories, with their population weights.
    private static readonly double[] s_posCategoryWeights = SeededRandom.Cumulative(0.30, 0.22, 0.15, 0.15, 0.08, 0.07, 0, 0.03);
    private static readonly double[] s_onlineCategoryWeights = SeededRandom.Cumulative(0, 0, 0, 0.35, 0, 0.12, 0.12, 0.06, 0.10, 0.25);

    // Activity by local hour: a payment at 03:00 is possible but about 40 times rarer than at noon.
    private static readonly double[] s_hourActivity =
    [
        0.05, 0.03, 0.02, 0.02, 0.03, 0.08, 0.2, 0.45, 0.7, 0.8, 0.85, 0.9,
        1.0, 0.95, 0.85, 0.8, 0.85, 0.9, 0.95, 0.9, 0.75, 0.55, 0.3, 0.12,
    ];

    // Country, UTC offset (hours, no daylight saving), and weights as home, as travel destination, as fraud origin.
    // The US appears twice (east and west coast) so that, at every UTC hour, some home zone is in its night.
    private static readonly (string Code, int Offset, double Home, double Travel, double Fraud)[] s_countries =
    [
        ("US", -5, 0.22, 0.20, 0), ("US", -8, 0.08, 0, 0), ("GB", 0, 0.11, 0.10, 0), ("DE", 1, 0.11, 0.08, 0),
        ("FR", 1, 0.07, 0.10, 0), ("ES", 1, 0.05, 0.10, 0), ("IT", 1, 0.05, 0.08, 0), ("NL", 1, 0.04, 0.03, 0),
        ("PL", 1, 0.04, 0.02, 0), ("SE", 1, 0.03, 0.02, 0), ("CA", -5, 0.06, 0.05, 0), ("MX", -6, 0.03, 0.06, 0),
        ("BR", -3, 0.04, 0.03, 0), ("IN", 5, 0.03, 0.02, 0), ("JP", 9, 0.02, 0.03, 0), ("AU", 10, 0.02, 0.02, 0),
        ("NZ", 12, 0.01, 0.01, 0), ("TH", 7, 0, 0.04, 0), ("TR", 3, 0, 0.03, 0), ("PT", 0, 0, 0.04, 0),
        ("GR", 2, 0, 0.03, 0), ("NG", 1, 0, 0, 0.2), ("RU", 3, 0, 0, 0.15), ("CN", 8, 0, 0, 0.15),
        ("VN", 7, 0, 0, 0.15), ("ID", 7, 0, 0, 0.1), ("UA", 2, 0, 0, 0.1), ("RO", 2, 0, 0, 0.15),
    ];

    private static readonly double[] s_homeWeights = SeededRandom.Cumulative([.. s_countries.Select(c => c.Home)]);
    private static readonly double[] s_travelWeights = SeededRandom.Cumulative([.. s_countries.Select(c => c.Travel)]);
    private static readonly double[] s_fraudWeights = SeededRandom.Cumulative([.. s_countries.Select(c => c.Fraud)]);

    private readonly Account[] _accounts;
    private readonly int[][] _accountsByCountry;
    private readonly double _meanGapMs;
    private readonly double[] _kindWeights;
    private readonly double _startProbability;
    private long _now;

    // Payments of the last hour, oldest first, to keep each account's PaymentsLastHour exact as the clock moves.
    private readonly Queue<(int Account, long UnixMs)> _lastHour = new();

    // The card-testing burst in progress, if any.
    private int _burstLeft;
    private int _burstAccount;
    private int _burstCountry;
    private bool _burstNewDevice;
    private double _burstDistance;

    /// <param name="seed">Same seed, same stream.</param>
    /// <param name="anomalyRate">Expected fraudulent fraction, in [0, <see cref="SyntheticStream.MaxAnomalyRate"/>].</param>
    /// <param name="accounts">Number of accounts; ids a00000, a00001, ….</param>
    /// <param name="start">Clock start (UTC); <see cref="SyntheticStream.DefaultStart"/> when null.</param>
    public TransactionStream(long seed = 1, double anomalyRate = DefaultAnomalyRate, int accounts = DefaultAccounts, DateTime? start = null)
        : base("transactions", 't', "account_id", 'a', accounts, s_columns, s_kinds, seed, anomalyRate, start)
    {
        double[] lengths = [MeanBurstLength, 1, 1, 1];
        _kindWeights = SeededRandom.Cumulative([.. lengths.Select(l => 1 / l)]);
        _startProbability = StartProbability(anomalyRate, lengths.Length / lengths.Sum(l => 1 / l));
        _meanGapMs = 86_400_000 / (accounts * PaymentsPerAccountPerDay);
        _now = StartUnixMs;

        _accounts = new Account[accounts];
        var byCountry = new List<int>[s_countries.Length];
        for (var c = 0; c < byCountry.Length; c++)
            byCountry[c] = [];
        for (var a = 0; a < accounts; a++)
        {
            ref var account = ref _accounts[a];
            account.Country = (byte)Random.Pick(s_homeWeights);
            account.AmountLog = Math.Log(28) + (0.5 * Random.Gaussian());
            account.OnlineShare = Random.Uniform(0.1, 0.5);
            account.AtmShare = Random.Uniform(0.02, 0.1);
            account.Favourite1 = (byte)Random.Pick(s_posCategoryWeights);
            account.Favourite2 = (byte)Random.Pick(s_posCategoryWeights);
            account.AverageAmount = Math.Exp(account.AmountLog) * 1.3;
            account.LastUnixMs = StartUnixMs - (long)Random.Exponential(43_200_000);
            byCountry[account.Country].Add(a);
        }

        _accountsByCountry = [.. byCountry.Select(l => l.ToArray())];
    }

    private protected override void Advance()
    {
        if (_burstLeft > 0)
        {
            _burstLeft--;
            // Card testers fire every minute or so, faster than the account's normal rhythm.
            _now += 1 + (long)Random.Exponential(Math.Min(_meanGapMs, 60_000));
            CardTestingPayment(_burstAccount);
            return;
        }

        _now += (long)Random.Exponential(_meanGapMs);
        if (_startProbability > 0 && Random.Chance(_startProbability))
        {
            switch (Random.Pick(_kindWeights))
            {
                case CardTestingIndex:
                    _burstAccount = Random.NextInt(EntityCount);
                    _burstLeft = Random.NextInt(5, 12) - 1;
                    _burstNewDevice = Random.Chance(0.6);
                    ref var burst = ref _accounts[_burstAccount];
                    _burstCountry = Random.Chance(0.6) ? burst.Country : Random.Pick(s_fraudWeights);
                    _burstDistance = _burstCountry == burst.Country ? LogNormal(300, 0.6) : Random.Uniform(2000, 12000);
                    CardTestingPayment(_burstAccount);
                    return;
                case UnusualAmountIndex:
                    UnusualAmountPayment(Random.NextInt(EntityCount));
                    return;
                case ForeignNewDeviceIndex:
                    ForeignNewDevicePayment(Random.NextInt(EntityCount));
                    return;
                default:
                    var sleeper = AccountInItsNight();
                    if (sleeper >= 0)
                        OddHoursPayment(sleeper);
                    else
                        UnusualAmountPayment(Random.NextInt(EntityCount));
                    return;
            }
        }

        NormalPayment(ActiveAccount());
    }

    /// <summary>An account drawn in proportion to how active accounts are at their local hour right now.</summary>
    private int ActiveAccount()
    {
        var a = Random.NextInt(EntityCount);
        for (var tries = 0; tries < 64 && !Random.Chance(s_hourActivity[LocalHour(a)]); tries++)
            a = Random.NextInt(EntityCount);
        return a;
    }

    private void NormalPayment(int a)
    {
        ref var account = ref _accounts[a];
        var u = Random.NextDouble();
        int country = account.Country;
        var newDevice = false;
        string channel;
        int category;
        double amount, distance;
        if (u < account.OnlineShare)
        {
            channel = Online;
            category = Random.Pick(s_onlineCategoryWeights);
            distance = LogNormal(8, 1.0); // where the IP address locates the buyer
            newDevice = Random.Chance(0.015);
        }
        else
        {
            var atm = u < account.OnlineShare + account.AtmShare;
            channel = atm ? Atm : Pos;
            category = atm ? Cash : Random.NextDouble() switch
            {
                < 0.60 => account.Favourite1,
                < 0.85 => account.Favourite2,
                _ => Random.Pick(s_posCategoryWeights),
            };
            var trip = Random.NextDouble();
            if (trip < 0.02)
            {
                country = PickOtherCountry(s_travelWeights, account.Country);
                distance = Math.Clamp(LogNormal(1500, 0.8), 150, 15_000);
            }
            else if (trip < 0.06)
            {
                distance = Math.Clamp(LogNormal(250, 0.7), 50, 3000);
            }
            else
            {
                distance = LogNormal(atm ? 2.5 : 4, 0.9);
            }
        }

        if (category == Cash)
            amount = 20 * Math.Clamp(Math.Round(Math.Exp(account.AmountLog) * 2 * Math.Exp(0.4 * Random.Gaussian()) / 20), 1, 25);
        else
            amount = Math.Max(0.5, Math.Exp(account.AmountLog + (0.55 * Random.Gaussian())) * s_categoryAmountFactor[category]);

        Emit(a, amount, category, country, channel, newDevice, distance, "");
    }

    private void CardTestingPayment(int a) =>
        Emit(a, Random.Uniform(0.5, 2.99), Random.Chance(0.7) ? DigitalGoods : Retail, _burstCountry, Online, _burstNewDevice,
            _burstDistance * Math.Exp(0.05 * Random.Gaussian()), CardTesting);

    private void UnusualAmountPayment(int a)
    {
        ref var account = ref _accounts[a];
        var online = Random.Chance(0.5);
        var category = Random.NextDouble() switch { < 0.5 => Electronics, < 0.8 => Travel, _ => Retail };
        Emit(a, account.AverageAmount * Random.Uniform(15, 50), category, account.Country, online ? Online : Pos, false,
            online ? LogNormal(8, 1.0) : LogNormal(4, 0.9), UnusualAmount);
    }

    private void ForeignNewDevicePayment(int a)
    {
        ref var account = ref _accounts[a];
        var category = Random.NextDouble() switch { < 0.4 => Electronics, < 0.7 => DigitalGoods, _ => Retail };
        Emit(a, Math.Exp(account.AmountLog) * Random.Uniform(3, 10), category, PickOtherCountry(s_fraudWeights, account.Country),
            Online, true, Random.Uniform(2000, 12_000), ForeignNewDevice);
    }

    private void OddHoursPayment(int a)
    {
        ref var account = ref _accounts[a];
        if (Random.Chance(0.75))
        {
            Emit(a, Math.Exp(account.AmountLog) * Random.Uniform(4, 12), Random.Chance(0.5) ? Electronics : DigitalGoods,
                account.Country, Online, Random.Chance(0.4), LogNormal(8, 1.0), OddHours);
        }
        else
        {
            Emit(a, 20 * Random.NextInt(15, 25), Cash, account.Country, Atm, false, LogNormal(2.5, 0.9), OddHours);
        }
    }

    /// <summary>A random account whose local time is 01:00–04:59 now, or -1 when no account is.</summary>
    private int AccountInItsNight()
    {
        var eligible = 0;
        for (var c = 0; c < s_countries.Length; c++)
        {
            if (IsNight(c))
                eligible += _accountsByCountry[c].Length;
        }

        if (eligible == 0)
            return -1;
        var pick = Random.NextInt(eligible);
        for (var c = 0; ; c++)
        {
            if (!IsNight(c))
                continue;
            if (pick < _accountsByCountry[c].Length)
                return _accountsByCountry[c][pick];
            pick -= _accountsByCountry[c].Length;
        }
    }

    private bool IsNight(int country) => HourOfDay(_now, s_countries[country].Offset) is >= 1 and < 5;

    private int LocalHour(int a) => HourOfDay(_now, s_countries[_accounts[a].Country].Offset);

    private int PickOtherCountry(double[] weights, int home)
    {
        var homeCode = s_countries[home].Code;
        for (var tries = 0; tries < 32; tries++)
        {
            var c = Random.Pick(weights);
            if (s_countries[c].Code != homeCode)
                return c;
        }

        // Only reachable with pathological weights; any other code will do.
        return home == 0 ? 2 : 0;
    }

    private double LogNormal(double median, double sigma) => median * Math.Exp(sigma * Random.Gaussian());

    private void Emit(int a, double amount, int category, int country, string channel, bool newDevice, double distance, string kind)
    {
        ref var account = ref _accounts[a];
        EntityIndex = a;
        AnomalyKind = kind;
        SetTimestamp(_now);
        amount = Round(amount, 2);
        SetNumber(AmountColumn, amount);
        SetText(MerchantCategoryColumn, s_categories[category]);
        SetText(CountryColumn, s_countries[country].Code);
        SetText(ChannelColumn, channel);
        SetNumber(HourColumn, LocalHour(a));
        SetNumber(DeviceNewColumn, newDevice ? 1 : 0);
        SetNumber(DistanceColumn, distance);
        SetNumber(AverageAmountColumn, account.AverageAmount);
        SetNumber(MinutesSinceLastColumn, Math.Max(0, _now - account.LastUnixMs) / 60_000.0);
        SetNumber(AmountToAverageColumn, amount / account.AverageAmount);
        while (_lastHour.Count > 0 && _lastHour.Peek().UnixMs <= _now - HourMs)
            _accounts[_lastHour.Dequeue().Account].PaymentsLastHour--;
        SetNumber(PaymentsLastHourColumn, account.PaymentsLastHour);
        SetNumber(ForeignCountryColumn, s_countries[country].Code == s_countries[account.Country].Code ? 0 : 1);

        // History features describe the past: update them after the event is written.
        account.AverageAmount += 0.1 * (amount - account.AverageAmount);
        account.LastUnixMs = _now;
        account.PaymentsLastHour++;
        _lastHour.Enqueue((a, _now));
    }

    private struct Account
    {
        public byte Country;       // index into s_countries (its offset gives the local hour)
        public byte Favourite1;    // in-store categories this account prefers
        public byte Favourite2;
        public double AmountLog;   // log of the account's typical amount
        public double OnlineShare;
        public double AtmShare;
        public double AverageAmount;
        public long LastUnixMs;
        public int PaymentsLastHour; // payments now in _lastHour
    }
}
