using AnomalyVae.Model;

namespace AnomalyVae.Tools;

/// <summary>
/// The generators' random source: <see cref="DeterministicRandom"/> (the project's one seeded generator, fixed by
/// our code rather than by System.Random's runtime-dependent algorithm) plus the distributions the generators draw.
/// </summary>
internal sealed class SeededRandom
{
    private DeterministicRandom _core;

    public SeededRandom(long seed) => _core = new DeterministicRandom(unchecked((ulong)seed));

    public ulong NextUInt64() => _core.NextUInt64();

    /// <summary>Uniform in [0, 1) with 53 random bits.</summary>
    public double NextDouble() => _core.NextDouble();

    /// <summary>Uniform in [min, max).</summary>
    public double Uniform(double min, double max) => min + ((max - min) * NextDouble());

    /// <summary>Uniform integer in [0, n), unbiased.</summary>
    public int NextInt(int n) => _core.NextInt(n);

    /// <summary>Uniform integer in [min, max].</summary>
    public int NextInt(int min, int max) => min + NextInt(max - min + 1);

    public bool Chance(double probability) => NextDouble() < probability;

    /// <summary>Standard normal.</summary>
    public double Gaussian() => _core.NextGaussian();

    /// <summary>Exponential with the given mean.</summary>
    public double Exponential(double mean) => -mean * Math.Log(1 - NextDouble());

    /// <summary>Index drawn with probability proportional to the (cumulative, ascending) weights' increments.</summary>
    public int Pick(ReadOnlySpan<double> cumulativeWeights)
    {
        var target = NextDouble() * cumulativeWeights[^1];
        for (var i = 0; i < cumulativeWeights.Length - 1; i++)
        {
            if (target < cumulativeWeights[i])
                return i;
        }

        return cumulativeWeights.Length - 1;
    }

    /// <summary>Running sums of <paramref name="weights"/>, the form <see cref="Pick"/> takes.</summary>
    public static double[] Cumulative(params ReadOnlySpan<double> weights)
    {
        var sums = new double[weights.Length];
        var total = 0.0;
        for (var i = 0; i < weights.Length; i++)
        {
            ArgumentOutOfRangeException.ThrowIfNegative(weights[i]);
            total += weights[i];
            sums[i] = total;
        }

        return sums;
    }
}
