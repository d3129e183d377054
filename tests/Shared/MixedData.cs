using System.Globalization;
using System.Text;

namespace AnomalyVae.Tests;

/// <summary>
/// A small mixed-type table with known structure for trainer tests: correlated numerics (one log-normal),
/// a categorical and a binary that depend on them, an id column and missing cells. Anomalies, when asked for,
/// break the correlations.
/// </summary>
internal static class MixedData
{
    public const string Header = "id,a,b,c,color,flag,label";
    private static readonly string[] Colors = ["red", "green", "blue", "black"];

    public static string WriteCsv(string directory, string name, int rows, int seed, double missingRate = 0.03, double anomalyRate = 0)
    {
        var random = new Random(seed);
        var text = new StringBuilder(rows * 48);
        text.Append(Header).Append('\n');
        for (int i = 0; i < rows; i++)
        {
            bool anomaly = random.NextDouble() < anomalyRate;
            double a = Gaussian(random);
            double b = 2 * a + 0.3 * Gaussian(random);
            double c = Math.Exp(1 + 0.5 * a + 0.2 * Gaussian(random));
            int color = a < -0.7 ? 0 : a < 0 ? 1 : a < 0.7 ? 2 : 3;
            int flag = b > 0 ? 1 : 0;
            if (anomaly)
            {
                b = -2 * a + 0.3 * Gaussian(random);
                color = (color + 2) % 4;
                c *= 20;
            }
            text.Append("r").Append(i).Append(',')
                .Append(Cell(a, random, missingRate)).Append(',')
                .Append(Cell(b, random, missingRate)).Append(',')
                .Append(Cell(c, random, missingRate)).Append(',')
                .Append(random.NextDouble() < missingRate ? "" : Colors[color]).Append(',')
                .Append(random.NextDouble() < missingRate ? "NA" : flag == 1 ? "true" : "false").Append(',')
                .Append(anomaly ? '1' : '0').Append('\n');
        }
        string path = Path.Combine(directory, name);
        File.WriteAllText(path, text.ToString());
        return path;
    }

    public static string SpecJson =>
        """{"features":[{"name":"a","kind":"numeric"},{"name":"b","kind":"numeric"},{"name":"c","kind":"numeric","log":true},{"name":"color","kind":"categorical"},{"name":"flag","kind":"binary"}],"ignore":["id","label"]}""";

    private static string Cell(double value, Random random, double missingRate) =>
        random.NextDouble() < missingRate ? "" : value.ToString("R", CultureInfo.InvariantCulture);

    private static double Gaussian(Random random) =>
        Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble());
}
