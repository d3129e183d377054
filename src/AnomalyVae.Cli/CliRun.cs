using System.CommandLine;
using System.Globalization;
using AnomalyVae.Inference;
using AnomalyVae.Model;
using AnomalyVae.Training.Engine;
using Microsoft.ML.OnnxRuntime;

namespace AnomalyVae.Cli;

/// <summary>A user-facing failure: printed as one "error:" line, exit code 1.</summary>
internal sealed class CliException(string message) : Exception(message);

/// <summary>Parses, runs, and turns every expected failure into one clear error line and a non-zero exit code.</summary>
internal static class CliRun
{
    public const int Usage = 2;
    public const int Failure = 1;

    /// <summary>The program's name in messages: this file is compiled into anomalyvae and anomalyvae-tools.</summary>
    private static readonly string Program = typeof(CliRun).Assembly.GetName().Name!;

    public static int Invoke(RootCommand root, string[] args)
    {
        var parse = root.Parse(args);
        if (parse.Errors.Count > 0)
        {
            Console.Error.WriteLine($"{Program}: error: {string.Join("; ", parse.Errors.Select(e => e.Message).Distinct())}");
            Console.Error.WriteLine($"Run '{HelpHint(parse)} --help' for usage.");
            return Usage;
        }
        try
        {
            return parse.Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
        }
        catch (Exception e) when (Describe(e) is { } message)
        {
            Console.Error.WriteLine($"{Program}: error: {message}");
            return e is OperationCanceledException ? 130 : Failure;
        }
    }

    private static string? Describe(Exception e) => e switch
    {
        CliException or CsvFormatException or FeatureSpecException or ModelFormatException => e.Message,
        OnnxRuntimeException => $"ONNX Runtime: {e.Message}",
        FileNotFoundException f => $"file not found: {f.FileName ?? f.Message}",
        DirectoryNotFoundException or IOException or UnauthorizedAccessException => e.Message,
        ArgumentException => e.Message,
        OperationCanceledException => "cancelled",
        _ => null,
    };

    private static string HelpHint(ParseResult parse)
    {
        var names = new List<string>();
        for (var c = parse.CommandResult; c is not null; c = c.Parent as System.CommandLine.Parsing.CommandResult)
            names.Add(c.Command.Name);
        names.Reverse();
        names[0] = Program;
        return string.Join(' ', names);
    }

    /// <summary>Checks that an input file exists before any work starts.</summary>
    public static string ExistingFile(string path, string what) =>
        File.Exists(path) ? path : throw new CliException($"{what} '{path}' does not exist.");

    /// <summary>Checks that an output file's directory exists (so a long training run does not fail at the end).</summary>
    public static string OutputFile(string path)
    {
        var directory = Path.GetDirectoryName(Path.GetFullPath(path));
        if (directory is not null && !Directory.Exists(directory))
            throw new CliException($"output directory '{directory}' does not exist.");
        return path;
    }

    /// <summary>The --score option of train and the quality benchmarks: reconstruction (default) or elbo.</summary>
    public static Option<string> ScoreOption()
    {
        var option = new Option<string>("--score")
        {
            Description = "What the model scores: reconstruction (An & Cho's reconstruction probability) or elbo (the -ELBO: adds the latent code's KL from the prior; per-event models only; docs/quality.md).",
            DefaultValueFactory = _ => "reconstruction",
        };
        option.AcceptOnlyFromAmong("reconstruction", "elbo");
        return option;
    }

    /// <summary>The value of <see cref="ScoreOption"/> as the training option.</summary>
    public static ScoreFunction ScoreFunctionOf(string? text) =>
        text == "elbo" ? ScoreFunction.NegativeElbo : ScoreFunction.ReconstructionProbability;

    /// <summary>The --quantile-map option of train and the quality benchmarks.</summary>
    public static Option<bool> QuantileMapOption() =>
        new("--quantile-map") { Description = "Blend a rank-Gauss map into every numeric feature's standardization (\"quantileMap\" in the spec, per feature; docs/quality.md)." };

    /// <summary>Parses --hidden ("128,64"): null when not given.</summary>
    public static int[]? ParseHidden(string? text)
    {
        if (string.IsNullOrWhiteSpace(text))
            return null;
        var parts = text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        var widths = new int[parts.Length];
        for (int i = 0; i < parts.Length; i++)
        {
            if (!int.TryParse(parts[i], NumberStyles.Integer, CultureInfo.InvariantCulture, out widths[i]) || widths[i] < 1)
                throw new CliException($"--hidden must be positive integers separated by commas, e.g. 128,64; got '{text}'.");
        }
        return widths;
    }
}
