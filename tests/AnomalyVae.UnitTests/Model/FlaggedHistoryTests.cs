using AnomalyVae.Model;

namespace AnomalyVae.UnitTests.Model;

public sealed class FlaggedHistoryTests
{
    [Fact]
    public void FlaggedHistoryStepsBecomeMissingAndTheEventsOwnStepNever()
    {
        // W = 4, F = 2, step-major; steps 0 and 2 were flagged.
        float[] values = [1, 2, 3, 4, 5, 6, 7, 8];
        float[] mask = [1, 1, 1, 0, 1, 1, 1, 1];
        FlaggedHistory.Apply(values, mask, [true, false, true], features: 2);
        Assert.Equal([0, 0, 3, 4, 0, 0, 7, 8], values);
        Assert.Equal([0, 0, 1, 0, 0, 0, 1, 1], mask);
    }

    [Fact]
    public void AnEventIsFlaggedStrictlyAboveTheThreshold()
    {
        Assert.True(FlaggedHistory.IsFlagged(5.0001, 5));
        Assert.False(FlaggedHistory.IsFlagged(5, 5));
    }

    [Fact]
    public void WrongShapesAreRejected()
    {
        float[] window = new float[8];
        Assert.Contains("3 history flags", Assert.Throws<ArgumentException>(() => FlaggedHistory.Apply(window, new float[8], [true], 2)).Message);
        Assert.Throws<ArgumentException>(() => FlaggedHistory.Apply(window, new float[6], [true, false], 2));
        Assert.Throws<ArgumentOutOfRangeException>(() => FlaggedHistory.Apply(window, new float[8], [], 0));
    }

    [Fact]
    public void ModelsWrittenBeforeTheRuleScoreWithTheWholeHistory()
    {
        Assert.False(WindowDefinition.FromJson("""{"steps":4,"entityField":"machine"}""").MaskFlaggedHistory);
        var current = new WindowDefinition(4, "machine", "ts") { MaskFlaggedHistory = true };
        Assert.Equal(current, WindowDefinition.FromJson(current.ToJson()));
    }
}
