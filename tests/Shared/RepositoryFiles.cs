namespace AnomalyVae.Tests;

/// <summary>Files of the repository the tests run from (found by walking up from the test binaries to AnomalyVae.sln).</summary>
internal static class RepositoryFiles
{
    private static readonly Lazy<string> s_root = new(() =>
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(System.IO.Path.Combine(dir.FullName, "AnomalyVae.sln")))
                return dir.FullName;
        }

        throw new InvalidOperationException($"AnomalyVae.sln not found above {AppContext.BaseDirectory}.");
    });

    public static string Root => s_root.Value;

    public static string Path(params string[] parts) => System.IO.Path.Combine([Root, .. parts]);
}
