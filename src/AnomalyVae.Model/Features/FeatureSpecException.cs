namespace AnomalyVae.Model;

/// <summary>A feature spec (or a fitted feature schema) that is malformed or does not fit the data it is used with.</summary>
public sealed class FeatureSpecException : Exception
{
    /// <summary>Creates the exception from one or more problems, each a complete sentence naming what is wrong.</summary>
    public FeatureSpecException(IReadOnlyList<string> problems, Exception? innerException = null)
        : base(Format(problems), innerException)
    {
        Problems = problems;
    }

    /// <summary>Creates the exception from a single problem.</summary>
    public FeatureSpecException(string problem, Exception? innerException = null)
        : this([problem], innerException)
    {
    }

    /// <summary>Every problem found, so a user can fix them all in one edit.</summary>
    public IReadOnlyList<string> Problems { get; }

    private static string Format(IReadOnlyList<string> problems) =>
        problems.Count == 1
            ? problems[0]
            : $"{problems.Count} problems:{Environment.NewLine}  - {string.Join(Environment.NewLine + "  - ", problems)}";
}
