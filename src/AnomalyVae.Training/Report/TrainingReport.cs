using System.Globalization;
using System.Net;
using System.Text;

namespace AnomalyVae.Training.Report;

/// <summary>One epoch's losses for the report's loss chart.</summary>
public readonly record struct EpochLoss(int Epoch, double Train, double Validation);

/// <summary>
/// The self-contained HTML page written by <c>train --report</c>: training and validation loss per epoch, the
/// calibration score histogram with the threshold, and a 2-D view of the latent means. Plots are inline SVG so
/// the page needs nothing at view time (no scripts, no network).
/// </summary>
public sealed class TrainingReport
{
    private const int Width = 720;
    private const int Height = 300;
    private const int Pad = 48;

    public required string Title { get; init; }

    /// <summary>Key facts shown as a table (rows, features, hyper-parameters, threshold, ...).</summary>
    public required IReadOnlyList<KeyValuePair<string, string>> Summary { get; init; }

    public required IReadOnlyList<EpochLoss> Losses { get; init; }

    /// <summary>Scores of the held-out calibration rows (higher = more anomalous).</summary>
    public required IReadOnlyList<double> CalibrationScores { get; init; }

    public required double Threshold { get; init; }

    /// <summary>Latent means of (a sample of) the training rows, row-major [rows, latentSize].</summary>
    public required float[] LatentMeans { get; init; }

    public required int LatentSize { get; init; }

    public void Save(string path) => File.WriteAllText(path, Render(), new UTF8Encoding(false));

    public string Render()
    {
        var html = new StringBuilder(64 * 1024);
        html.Append("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>")
            .Append(WebUtility.HtmlEncode(Title))
            .Append("</title><style>body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:780px}")
            .Append("table{border-collapse:collapse}td{padding:2px 12px 2px 0}td:first-child{color:#666}")
            .Append("svg{background:#fafafa;border:1px solid #ddd;margin:6px 0 18px}text{font-size:11px;fill:#444}")
            .Append("</style></head><body><h1>").Append(WebUtility.HtmlEncode(Title)).Append("</h1><table>");
        foreach (var (key, value) in Summary)
            html.Append("<tr><td>").Append(WebUtility.HtmlEncode(key)).Append("</td><td>").Append(WebUtility.HtmlEncode(value)).Append("</td></tr>");
        html.Append("</table>");

        html.Append("<h2>Loss per epoch</h2><p>Negative ELBO per row; the validation curve drives early stopping.</p>");
        AppendLossChart(html);
        html.Append("<h2>Calibration scores</h2><p>Scores of held-out normal rows; the red line is the threshold (")
            .Append(Format(Threshold)).Append(").</p>");
        AppendHistogram(html);
        html.Append("<h2>Latent space</h2><p>Latent means of training rows, projected on their first two principal axes.</p>");
        AppendLatentScatter(html);
        html.Append("</body></html>\n");
        return html.ToString();
    }

    private void AppendLossChart(StringBuilder html)
    {
        if (Losses.Count == 0)
        {
            html.Append("<p>No epochs were recorded.</p>");
            return;
        }
        var values = Losses.SelectMany(l => new[] { l.Train, l.Validation }).Where(double.IsFinite).ToArray();
        var (lo, hi) = Range(values);
        double xMax = Math.Max(1, Losses[^1].Epoch);
        double xMin = Losses[0].Epoch;
        OpenSvg(html, "loss");
        Axes(html, xMin, xMax, lo, hi, "epoch", "loss");
        Polyline(html, Losses.Select(l => (double)l.Epoch).ToArray(), Losses.Select(l => l.Train).ToArray(), xMin, xMax, lo, hi, "#1f77b4");
        Polyline(html, Losses.Select(l => (double)l.Epoch).ToArray(), Losses.Select(l => l.Validation).ToArray(), xMin, xMax, lo, hi, "#ff7f0e");
        html.Append(CultureInfo.InvariantCulture, $"<text x=\"{Width - 170}\" y=\"20\" fill=\"#1f77b4\">■ train</text>")
            .Append(CultureInfo.InvariantCulture, $"<text x=\"{Width - 100}\" y=\"20\" fill=\"#ff7f0e\">■ validation</text></svg>");
    }

    private void AppendHistogram(StringBuilder html)
    {
        var scores = CalibrationScores.Where(double.IsFinite).ToArray();
        if (scores.Length == 0)
        {
            html.Append("<p>No calibration scores.</p>");
            return;
        }
        const int bins = 40;
        var (lo, hi) = Range([.. scores, Threshold]);
        var counts = new int[bins];
        foreach (double s in scores)
            counts[Math.Clamp((int)((s - lo) / (hi - lo) * bins), 0, bins - 1)]++;
        int maxCount = Math.Max(1, counts.Max());
        OpenSvg(html, "calibration histogram");
        Axes(html, lo, hi, 0, maxCount, "score", "rows");
        double barWidth = (Width - 2.0 * Pad) / bins;
        for (int b = 0; b < bins; b++)
        {
            double h = (Height - 2.0 * Pad) * counts[b] / maxCount;
            html.Append(CultureInfo.InvariantCulture,
                $"<rect x=\"{Pad + b * barWidth:F1}\" y=\"{Height - Pad - h:F1}\" width=\"{barWidth - 1:F1}\" height=\"{h:F1}\" fill=\"#7f9fbf\"/>");
        }
        double tx = X(Threshold, lo, hi);
        html.Append(CultureInfo.InvariantCulture, $"<line x1=\"{tx:F1}\" y1=\"{Pad}\" x2=\"{tx:F1}\" y2=\"{Height - Pad}\" stroke=\"#d62728\" stroke-width=\"2\"/>")
            .Append(CultureInfo.InvariantCulture, $"<text x=\"{tx + 4:F1}\" y=\"{Pad + 10}\" fill=\"#d62728\">threshold</text></svg>");
    }

    private void AppendLatentScatter(StringBuilder html)
    {
        int rows = LatentSize > 0 ? LatentMeans.Length / LatentSize : 0;
        if (rows == 0)
        {
            html.Append("<p>No latent means.</p>");
            return;
        }
        var (px, py) = LatentProjection.FirstTwoPrincipalAxes(LatentMeans, rows, LatentSize);
        var (xLo, xHi) = Range(px);
        var (yLo, yHi) = Range(py);
        OpenSvg(html, "latent means");
        Axes(html, xLo, xHi, yLo, yHi, "axis 1", "axis 2");
        for (int i = 0; i < rows; i++)
        {
            html.Append(CultureInfo.InvariantCulture,
                $"<circle cx=\"{X(px[i], xLo, xHi):F1}\" cy=\"{Y(py[i], yLo, yHi):F1}\" r=\"1.6\" fill=\"#2ca02c\" fill-opacity=\"0.5\"/>");
        }
        html.Append("</svg>");
    }

    private static void OpenSvg(StringBuilder html, string label) =>
        html.Append(CultureInfo.InvariantCulture,
            $"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{Width}\" height=\"{Height}\" viewBox=\"0 0 {Width} {Height}\" role=\"img\" aria-label=\"{label}\">");

    private static void Axes(StringBuilder html, double xLo, double xHi, double yLo, double yHi, string xLabel, string yLabel)
    {
        html.Append(CultureInfo.InvariantCulture,
            $"<line x1=\"{Pad}\" y1=\"{Height - Pad}\" x2=\"{Width - Pad}\" y2=\"{Height - Pad}\" stroke=\"#888\"/>")
            .Append(CultureInfo.InvariantCulture, $"<line x1=\"{Pad}\" y1=\"{Pad}\" x2=\"{Pad}\" y2=\"{Height - Pad}\" stroke=\"#888\"/>");
        for (int t = 0; t <= 4; t++)
        {
            double xv = xLo + (xHi - xLo) * t / 4;
            double yv = yLo + (yHi - yLo) * t / 4;
            html.Append(CultureInfo.InvariantCulture, $"<text x=\"{X(xv, xLo, xHi):F1}\" y=\"{Height - Pad + 14}\" text-anchor=\"middle\">{Format(xv)}</text>")
                .Append(CultureInfo.InvariantCulture, $"<text x=\"{Pad - 4}\" y=\"{Y(yv, yLo, yHi) + 4:F1}\" text-anchor=\"end\">{Format(yv)}</text>");
        }
        html.Append(CultureInfo.InvariantCulture, $"<text x=\"{Width / 2}\" y=\"{Height - 8}\" text-anchor=\"middle\">{xLabel}</text>")
            .Append(CultureInfo.InvariantCulture, $"<text x=\"12\" y=\"{Pad - 12}\">{yLabel}</text>");
    }

    private static void Polyline(StringBuilder html, double[] xs, double[] ys, double xLo, double xHi, double yLo, double yHi, string color)
    {
        html.Append("<polyline fill=\"none\" stroke=\"").Append(color).Append("\" stroke-width=\"2\" points=\"");
        for (int i = 0; i < xs.Length; i++)
        {
            if (double.IsFinite(ys[i]))
                html.Append(CultureInfo.InvariantCulture, $"{X(xs[i], xLo, xHi):F1},{Y(ys[i], yLo, yHi):F1} ");
        }
        html.Append("\"/>");
    }

    private static double X(double v, double lo, double hi) => Pad + (v - lo) / (hi - lo) * (Width - 2.0 * Pad);

    private static double Y(double v, double lo, double hi) => Height - Pad - (v - lo) / (hi - lo) * (Height - 2.0 * Pad);

    private static (double Lo, double Hi) Range(IReadOnlyList<double> values)
    {
        double lo = double.PositiveInfinity, hi = double.NegativeInfinity;
        foreach (double v in values)
        {
            if (!double.IsFinite(v))
                continue;
            lo = Math.Min(lo, v);
            hi = Math.Max(hi, v);
        }
        if (!double.IsFinite(lo))
            return (0, 1);
        if (hi - lo < 1e-12)
            return (lo - 0.5, hi + 0.5);
        double margin = 0.02 * (hi - lo);
        return (lo - margin, hi + margin);
    }

    private static string Format(double v) => v.ToString(Math.Abs(v) >= 1000 || (Math.Abs(v) < 0.01 && v != 0) ? "0.##E+0" : "0.###", CultureInfo.InvariantCulture);
}

/// <summary>Projects latent means onto their first two principal axes (power iteration on the covariance).</summary>
public static class LatentProjection
{
    public static (double[] X, double[] Y) FirstTwoPrincipalAxes(ReadOnlySpan<float> means, int rows, int size)
    {
        var xs = new double[rows];
        var ys = new double[rows];
        if (size == 1)
        {
            for (int i = 0; i < rows; i++)
                xs[i] = means[i];
            return (xs, ys);
        }
        var center = new double[size];
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < size; j++)
                center[j] += means[i * size + j] / (double)rows;
        var cov = new double[size, size];
        for (int i = 0; i < rows; i++)
            for (int a = 0; a < size; a++)
                for (int b = 0; b < size; b++)
                    cov[a, b] += (means[i * size + a] - center[a]) * (means[i * size + b] - center[b]);
        var first = PowerIteration(cov, size, null);
        var second = PowerIteration(cov, size, first);
        for (int i = 0; i < rows; i++)
        {
            for (int j = 0; j < size; j++)
            {
                double c = means[i * size + j] - center[j];
                xs[i] += c * first[j];
                ys[i] += c * second[j];
            }
        }
        return (xs, ys);
    }

    private static double[] PowerIteration(double[,] cov, int size, double[]? orthogonalTo)
    {
        var v = new double[size];
        for (int j = 0; j < size; j++)
            v[j] = 1.0 / (j + 1); // a fixed start keeps the picture reproducible
        for (int iteration = 0; iteration < 200; iteration++)
        {
            if (orthogonalTo is not null)
            {
                double dot = 0;
                for (int j = 0; j < size; j++)
                    dot += v[j] * orthogonalTo[j];
                for (int j = 0; j < size; j++)
                    v[j] -= dot * orthogonalTo[j];
            }
            var next = new double[size];
            for (int a = 0; a < size; a++)
                for (int b = 0; b < size; b++)
                    next[a] += cov[a, b] * v[b];
            double norm = Math.Sqrt(next.Sum(x => x * x));
            if (norm < 1e-300)
                return v;
            for (int j = 0; j < size; j++)
                v[j] = next[j] / norm;
        }
        return v;
    }
}
