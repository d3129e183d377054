using AnomalyVae.Tools;

namespace AnomalyVae.UnitTests.Tools;

/// <summary>The quality harness's ensemble score: −log of the members' mean p̂(x).</summary>
public sealed class EnsembleScoreTests
{
    [Fact]
    public void Score_is_minus_log_of_the_mean_probability()
    {
        var scores = ProtocolBenchmark.MeanProbabilityScore([[1f, 10f], [3f, 10f]]);
        Assert.Equal(-Math.Log((Math.Exp(-1) + Math.Exp(-3)) / 2), scores[0], 12);
        Assert.Equal(10, scores[1], 12);
    }

    [Fact]
    public void Large_scores_stay_finite_and_near_the_best_member_plus_log_k()
    {
        var scores = ProtocolBenchmark.MeanProbabilityScore([[500f], [800f]]);
        Assert.Equal(500 + Math.Log(2), scores[0], 9);
    }
}
