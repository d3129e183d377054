using System.CommandLine;

namespace AnomalyVae.Cli;

/// <summary><c>bench</c>: benchmarks that print numbers (speed goals live here, not in tests).</summary>
internal static class BenchCommands
{
    public static Command Bench()
    {
        var score = new Command("score", "ONNX Runtime batch scoring cost per row at batch 1024 (and the C# engine's, for comparison).");
        score.SetAction(_ => { ScoringBenchmark.Run(Console.Out); return 0; });
        return new Command("bench", "Benchmarks; each prints its numbers.") { score };
    }
}
