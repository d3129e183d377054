using System.Globalization;
using AnomalyVae.Training.Engine;

namespace AnomalyVae.Cli;

/// <summary>Training progress: a live bar redrawn in place on a terminal, one plain line per epoch otherwise (logs, CI).</summary>
internal sealed class EpochProgress(TextWriter output) : IDisposable
{
    private const int BarWidth = 28;
    private readonly bool _live = !Console.IsErrorRedirected;
    private bool _drawn;

    public void Report(VaeEpochProgress p)
    {
        string validation = p.ValidationLoss is { } v ? v.ToString("F4", CultureInfo.InvariantCulture) : "-";
        string losses = string.Create(CultureInfo.InvariantCulture,
            $"loss {p.TrainLoss:F4} val {validation} β {p.Beta:F2}{(p.IsBest ? " *" : "")}");
        if (_live)
        {
            int filled = (int)Math.Round(BarWidth * (double)p.Epoch / p.Epochs);
            output.Write($"\r\u001b[2K[{new string('#', filled)}{new string('.', BarWidth - filled)}] epoch {p.Epoch}/{p.Epochs}  {losses}  {Time(p.Elapsed)} ETA {Time(p.Remaining)}");
            _drawn = true;
        }
        else
        {
            output.WriteLine($"epoch {p.Epoch}/{p.Epochs}  {losses}  elapsed {Time(p.Elapsed)}  eta {Time(p.Remaining)}");
        }
    }

    public void Finish()
    {
        if (_drawn)
        {
            output.WriteLine();
            _drawn = false;
        }
    }

    public void Dispose() => Finish();

    private static string Time(TimeSpan t) => t.TotalHours >= 1 ? t.ToString(@"h\:mm\:ss", CultureInfo.InvariantCulture) : t.ToString(@"m\:ss", CultureInfo.InvariantCulture);
}
