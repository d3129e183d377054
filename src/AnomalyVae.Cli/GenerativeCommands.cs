using System.CommandLine;
using AnomalyVae.Model;
using AnomalyVae.Training.Engine;
using AnomalyVae.Training.Export;

namespace AnomalyVae.Cli;

/// <summary>The VAE as a generator: <c>sample</c> synthetic rows and <c>interpolate</c> between rows through latent space.</summary>
internal static class GenerativeCommands
{
    public static Command Sample()
    {
        var model = ScoreCommands.ModelOption();
        var count = new Option<int>("--n") { Description = "Rows to generate.", Required = true };
        var output = ScoreCommands.OutOption("Output CSV with the model's feature columns in original units.");
        var seed = new Option<int>("--seed") { Description = "Random seed.", DefaultValueFactory = _ => 1 };
        var mean = new Option<bool>("--mean") { Description = "Use each numeric head's mean instead of sampling around it." };
        var command = new Command("sample", "Generate synthetic rows: z ~ N(0, I), decoded and sampled from p(x|z).") { model, count, output, seed, mean };
        command.SetAction(parse =>
        {
            int n = parse.GetValue(count);
            if (n < 1 || n > 10_000_000)
                throw new CliException($"--n must be between 1 and 10000000; got {n}.");
            var (vae, schema, _, _) = PerEvent(ModelFile.Read(CliRun.ExistingFile(parse.GetValue(model)!, "model file")));
            int z = vae.LatentSize, f = schema.Count, s = parse.GetValue(seed);
            var latent = new float[n * z];
            var rng = new DeterministicRandom((ulong)(uint)s, 0x5A4);
            for (int i = 0; i < latent.Length; i++)
                latent[i] = (float)rng.NextGaussian();
            var values = new float[n * f];
            new VaeSampler(vae).Sample(latent, values, s, parse.GetValue(mean));
            WriteRows(CliRun.OutputFile(parse.GetValue(output)!), schema, values, n, prefix: null);
            Console.Error.WriteLine($"generated {n} rows; wrote {parse.GetValue(output)}");
            return 0;
        });
        return command;
    }

    /// <summary>sample and interpolate generate single events; a windowed model generates windows, which they do not handle.</summary>
    private static ModelFileContents PerEvent(ModelFileContents contents) => contents.Window is null
        ? contents
        : throw new CliException($"this is a windowed model ({contents.Window.Steps} events per '{contents.Window.EntityField}'); sample and interpolate work on models that score each event alone.");

    public static Command Interpolate()
    {
        var model = ScoreCommands.ModelOption();
        var data = ScoreCommands.DataOption();
        var from = new Option<int>("--from") { Description = "1-based data row to start from.", Required = true };
        var to = new Option<int>("--to") { Description = "1-based data row to end at.", Required = true };
        var steps = new Option<int>("--steps") { Description = "Points on the path, ends included.", DefaultValueFactory = _ => 8 };
        var output = ScoreCommands.OutOption("Output CSV: step, t, then the decoded feature columns.");
        var command = new Command("interpolate", "Walk a straight line between two rows' latent means and decode each point (most likely values).")
        {
            model, data, from, to, steps, output,
        };
        command.SetAction((parse, cancellationToken) =>
        {
            var (vae, schema, _, _) = PerEvent(ModelFile.Read(CliRun.ExistingFile(parse.GetValue(model)!, "model file")));
            var table = FeatureTable.Load(CliRun.ExistingFile(parse.GetValue(data)!, "data file"), schema, cancellationToken: cancellationToken);
            int a = parse.GetValue(from), b = parse.GetValue(to), k = parse.GetValue(steps);
            if (a < 1 || a > table.RowCount || b < 1 || b > table.RowCount)
                throw new CliException($"--from and --to must be data rows between 1 and {table.RowCount}; got {a} and {b}.");
            if (k < 2 || k > 10_000)
                throw new CliException($"--steps must be between 2 and 10000; got {k}.");
            var ends = table.Select([a - 1, b - 1]);
            var generator = new VaeSampler(vae);
            int z = vae.LatentSize, f = schema.Count;
            var mean = new float[2 * z];
            generator.Encode(ends.StandardizedValues(), ends.Mask, mean, new float[2 * z]);
            var path = new float[k * z];
            for (int i = 0; i < k; i++)
            {
                float t = i / (float)(k - 1);
                for (int d = 0; d < z; d++)
                    path[i * z + d] = (1 - t) * mean[d] + t * mean[z + d];
            }
            var heads = new float[k * vae.Layout.HeadWidth];
            generator.Decode(path, heads);
            var values = MostLikely(vae.Layout, heads, k);
            WriteRows(CliRun.OutputFile(parse.GetValue(output)!), schema, values, k, prefix: i => [i.ToString(System.Globalization.CultureInfo.InvariantCulture), (i / (double)(k - 1)).ToString("0.####", System.Globalization.CultureInfo.InvariantCulture)]);
            Console.Error.WriteLine($"interpolated {k} points from row {a} to row {b}; wrote {parse.GetValue(output)}");
            return Task.FromResult(0);
        });
        return command;
    }

    /// <summary>Engine-form values with the highest likelihood: numeric means, most likely category, bit = logit > 0.</summary>
    private static float[] MostLikely(VaeLayout layout, float[] heads, int rows)
    {
        int f = layout.FeatureCount, p = layout.HeadWidth;
        var values = new float[rows * f];
        for (int r = 0; r < rows; r++)
        {
            var h = heads.AsSpan(r * p, p);
            for (int j = 0; j < f; j++)
            {
                int o = layout.HeadOffsets[j];
                var feature = layout.Features[j];
                values[r * f + j] = feature.Kind switch
                {
                    FeatureKind.Numeric => h[o],
                    FeatureKind.Binary => h[o] > 0 ? 1f : 0f,
                    _ => 1 + h.Slice(o + 1, feature.Categories - 1).IndexOf(MaxOf(h.Slice(o + 1, feature.Categories - 1))),
                };
            }
        }
        return values;
    }

    private static float MaxOf(ReadOnlySpan<float> values)
    {
        float max = float.NegativeInfinity;
        foreach (float v in values)
            max = MathF.Max(max, v);
        return max;
    }

    /// <summary>Writes engine-form rows in original units: numeric de-standardized (and un-logged), categories as labels, bits as 0/1.</summary>
    private static void WriteRows(string path, FeatureSchema schema, float[] values, int rows, Func<int, string[]>? prefix)
    {
        using var writer = CsvWriter.Create(path);
        var header = new List<string>();
        if (prefix is not null)
            header.AddRange(["step", "t"]);
        header.AddRange(schema.Features.Select(x => x.Name));
        writer.WriteRecord(header);
        int f = schema.Count;
        for (int r = 0; r < rows; r++)
        {
            if (prefix is not null)
            {
                foreach (var cell in prefix(r))
                    writer.WriteField(cell);
            }
            for (int j = 0; j < f; j++)
            {
                var feature = schema.Features[j];
                float v = values[r * f + j];
                switch (feature.Kind)
                {
                    case FeatureKind.Numeric:
                        writer.WriteField(feature.Unstandardize(v));
                        break;
                    case FeatureKind.Categorical:
                        writer.WriteField(feature.Vocabulary[Math.Clamp((int)v, 0, feature.Cardinality - 1)]);
                        break;
                    default:
                        writer.WriteField(v > 0.5f ? "1" : "0");
                        break;
                }
            }
            writer.EndRecord();
        }
    }
}
