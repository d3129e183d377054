namespace AnomalyVae.Tools;

/// <summary>
/// Readings from a fleet of machines reporting in turn every <see cref="ReadingIntervalMs"/>, with daily load cycles,
/// lagged temperature and a running/idle/maintenance status, and injected anomalies (spike, stuck_sensor, drift,
/// broken_correlation, impossible_state) in about equal shares. The physics and each kind:
/// docs/cli.md#synthetic-streams.
/// </summary>
public sealed class SensorStream : SyntheticStream
{
    /// <summary>Default fraction of anomalous events (1%).</summary>
    public const double DefaultAnomalyRate = 0.01;

    public const int DefaultMachines = 50;

    /// <summary>Each machine reports once a minute.</summary>
    public const long ReadingIntervalMs = 60_000;

    public const int StuckLength = 6;

    public const int DriftLength = 12;

    public const string Running = "running";
    public const string Idle = "idle";
    public const string Maintenance = "maintenance";

    public const string Spike = "spike";
    public const string StuckSensor = "stuck_sensor";
    public const string Drift = "drift";
    public const string BrokenCorrelation = "broken_correlation";
    public const string ImpossibleState = "impossible_state";

    // Feature column indexes, in payload order.
    public const int TemperatureColumn = 0;
    public const int VibrationColumn = 1;
    public const int PressureColumn = 2;
    public const int RpmColumn = 3;
    public const int CurrentColumn = 4;
    public const int StatusColumn = 5;

    // Name and decimals (text columns: TextColumn).
    private static readonly (string, int)[] s_columns =
        [("temperature", 2), ("vibration", 3), ("pressure", 3), ("rpm", 0), ("current", 2), ("status", TextColumn)];

    private static readonly string[] s_kinds = [Spike, StuckSensor, Drift, BrokenCorrelation, ImpossibleState];
    private static readonly int[] s_kindLengths = [1, StuckLength, DriftLength, 1, 1];

    private readonly Machine[] _machines;
    private readonly double _startProbability;
    private readonly double[] _kindWeights;

    /// <param name="seed">Same seed, same stream.</param>
    /// <param name="anomalyRate">Expected anomalous fraction, in [0, <see cref="SyntheticStream.MaxAnomalyRate"/>].</param>
    /// <param name="machines">Fleet size; ids m000, m001, ….</param>
    /// <param name="start">Time of the first reading (UTC); <see cref="SyntheticStream.DefaultStart"/> when null.</param>
    public SensorStream(long seed = 1, double anomalyRate = DefaultAnomalyRate, int machines = DefaultMachines, DateTime? start = null)
        : base("sensors", 's', "machine_id", 'm', machines, s_columns, s_kinds, seed, anomalyRate, start)
    {
        // Equal share of anomalous events per kind: a kind lasting L events starts with weight 1/L.
        _kindWeights = SeededRandom.Cumulative([.. s_kindLengths.Select(l => 1.0 / l)]);
        var meanLength = s_kinds.Length / s_kindLengths.Sum(l => 1.0 / l);
        _startProbability = StartProbability(anomalyRate, meanLength);

        _machines = new Machine[machines];
        for (var m = 0; m < machines; m++)
        {
            ref var machine = ref _machines[m];
            machine.RatedRpm = 100 * Random.NextInt(14, 36);
            machine.CurrentPerKrpm = Random.Uniform(4, 7);
            machine.IdleCurrent = Random.Uniform(0.4, 0.9);
            machine.VibrationBase = Random.Uniform(0.3, 0.8);
            machine.VibrationPerKrpm = Random.Uniform(0.9, 1.5);
            machine.TemperatureOffset = Random.Uniform(-3, 5);
            machine.PressureBase = Random.Uniform(2, 4);
            machine.PressurePerLoad = Random.Uniform(1, 2);
            machine.DailyPhase = Random.Uniform(-0.03, 0.03);
            machine.Status = Status.Running;
            machine.Temperature = 21 + machine.TemperatureOffset + (11 * machine.RatedRpm * 0.7 / 1000);
        }
    }

    private enum Status : byte
    {
        Running,
        Idle,
        Maintenance,
    }

    private protected override void Advance()
    {
        var k = Generated - 1;
        var m = (int)(k % EntityCount);
        EntityIndex = m;
        var now = StartUnixMs + (k / EntityCount * ReadingIntervalMs) + (k % EntityCount * ReadingIntervalMs / EntityCount);
        SetTimestamp(now);

        ref var machine = ref _machines[m];
        var day = DayFraction(now);
        var load = Math.Clamp(0.62 + (0.28 * Math.Sin(2 * Math.PI * (day + machine.DailyPhase - (13.0 / 24) + 0.25))) + (0.04 * Random.Gaussian()), 0.2, 1);
        var ambient = 21 + (4 * Math.Sin(2 * Math.PI * (day - (15.0 / 24) + 0.25)));

        // A stuck episode also holds the status, so the frozen value keeps contradicting the machine's state.
        if (machine.EpisodeLeft == 0 || machine.Episode != StuckIndex)
            StepStatus(ref machine, load);

        // The physical state first; anomalies below change what is reported, never the machine's state.
        var runningRpm = machine.RatedRpm * (0.45 + (0.55 * load)) * (1 + (0.02 * Random.Gaussian()));
        double rpm, current, vibration, pressure, heat;
        switch (machine.Status)
        {
            case Status.Running:
                rpm = runningRpm;
                (current, vibration, pressure) = RunningReadings(ref machine, rpm);
                heat = 11 * rpm / 1000;
                break;
            case Status.Idle:
                rpm = 0;
                current = machine.IdleCurrent * (1 + (0.05 * Random.Gaussian()));
                vibration = 0.05 + (0.02 * Math.Abs(Random.Gaussian()));
                pressure = machine.PressureBase + (0.05 * Random.Gaussian());
                heat = 2;
                break;
            default:
                rpm = 0;
                current = 0.05 + (0.03 * Math.Abs(Random.Gaussian()));
                vibration = 0.02 * Math.Abs(Random.Gaussian());
                pressure = 0.3 + (0.1 * Math.Abs(Random.Gaussian()));
                heat = 0;
                break;
        }

        machine.Temperature += 0.12 * (ambient + machine.TemperatureOffset + heat - machine.Temperature);
        var temperature = machine.Temperature + (0.3 * Random.Gaussian());
        var status = machine.Status;

        if (machine.EpisodeLeft == 0 && _startProbability > 0 && Random.Chance(_startProbability))
            StartAnomaly(ref machine);

        if (machine.EpisodeLeft > 0)
        {
            var index = machine.Episode;
            var step = s_kindLengths[index] - machine.EpisodeLeft;
            machine.EpisodeLeft--;
            AnomalyKind = s_kinds[index];
            switch (index)
            {
                case SpikeIndex:
                    var sensor = status == Status.Running ? Random.NextInt(4) : Random.NextInt(2);
                    switch (sensor)
                    {
                        case 0: temperature += Random.Uniform(18, 35); break;
                        case 1: pressure += Random.Uniform(2.5, 5); break;
                        case 2: vibration = (vibration * Random.Uniform(3, 6)) + 2; break;
                        default: current *= Random.Uniform(1.8, 3); break;
                    }

                    break;
                case StuckIndex:
                    vibration = machine.StuckValue;
                    break;
                case DriftIndex:
                    temperature += 8 + (2.5 * step);
                    break;
                case BrokenCorrelationIndex:
                    status = Status.Running;
                    rpm = runningRpm;
                    (_, vibration, pressure) = RunningReadings(ref machine, rpm);
                    current = Random.Uniform(0.05, 0.4);
                    break;
                default: // impossible state: a running machine's readings under a stopped status
                    rpm = runningRpm;
                    (current, vibration, pressure) = RunningReadings(ref machine, rpm);
                    status = Random.Chance(0.7) ? Status.Idle : Status.Maintenance;
                    break;
            }
        }

        SetNumber(TemperatureColumn, temperature);
        SetNumber(VibrationColumn, Math.Max(vibration, 0));
        SetNumber(PressureColumn, Math.Max(pressure, 0));
        SetNumber(RpmColumn, rpm);
        SetNumber(CurrentColumn, Math.Max(current, 0));
        SetText(StatusColumn, status switch { Status.Running => Running, Status.Idle => Idle, _ => Maintenance });
    }

    private const int SpikeIndex = 0;
    private const int StuckIndex = 1;
    private const int DriftIndex = 2;
    private const int BrokenCorrelationIndex = 3;

    private (double Current, double Vibration, double Pressure) RunningReadings(ref Machine machine, double rpm) =>
        (machine.IdleCurrent + (machine.CurrentPerKrpm * rpm / 1000 * (1 + (0.025 * Random.Gaussian()))),
         machine.VibrationBase + (machine.VibrationPerKrpm * rpm / 1000) + (0.1 * Random.Gaussian()),
         machine.PressureBase + (machine.PressurePerLoad * rpm / machine.RatedRpm) + (0.06 * Random.Gaussian()));

    private void StepStatus(ref Machine machine, double load)
    {
        switch (machine.Status)
        {
            case Status.Running:
                var u = Random.NextDouble();
                if (u < 0.0004)
                {
                    machine.Status = Status.Maintenance;
                    machine.StatusLeft = Random.NextInt(30, 120);
                }
                else if (u < 0.0004 + 0.004 + (0.02 * (1 - load)))
                {
                    machine.Status = Status.Idle; // more idling when the load is low (nights)
                }

                break;
            case Status.Idle:
                if (Random.Chance(0.05 + (0.1 * load)))
                    machine.Status = Status.Running;
                break;
            default:
                if (--machine.StatusLeft <= 0)
                    machine.Status = Status.Running;
                break;
        }
    }

    private void StartAnomaly(ref Machine machine)
    {
        var index = Random.Pick(_kindWeights);
        machine.Episode = index;
        machine.EpisodeLeft = s_kindLengths[index];
        if (index == StuckIndex)
        {
            // Frozen where the current state says it cannot be: idle-level while running, running-level while stopped.
            machine.StuckValue = machine.Status == Status.Running
                ? Round(0.04 + (0.03 * Random.NextDouble()), 3)
                : Round(machine.VibrationBase + (machine.VibrationPerKrpm * machine.RatedRpm * 0.8 / 1000), 3);
        }
    }

    private struct Machine
    {
        public double RatedRpm;
        public double CurrentPerKrpm;
        public double IdleCurrent;
        public double VibrationBase;
        public double VibrationPerKrpm;
        public double TemperatureOffset;
        public double PressureBase;
        public double PressurePerLoad;
        public double DailyPhase;
        public double Temperature; // lags the load: the sensor reads this plus noise
        public Status Status;
        public int StatusLeft;     // maintenance readings left
        public int Episode;        // anomaly kind index while EpisodeLeft > 0
        public int EpisodeLeft;
        public double StuckValue;
    }
}
