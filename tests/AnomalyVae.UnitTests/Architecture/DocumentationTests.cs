using System.Text.RegularExpressions;
using AnomalyVae.Tests;

namespace AnomalyVae.UnitTests.Architecture;

/// <summary>The README stays a short user's guide that reaches every docs page, and links inside the docs resolve.</summary>
public sealed partial class DocumentationTests
{
    [Fact]
    public void Readme_is_short_and_links_every_docs_page()
    {
        var readme = RepositoryFiles.Path("README.md");
        Assert.True(new FileInfo(readme).Length <= 15 * 1024, $"README.md is {new FileInfo(readme).Length} bytes; reference belongs in docs/.");
        var linked = DocsLink().Matches(File.ReadAllText(readme)).Select(m => m.Groups[1].Value).ToHashSet(StringComparer.Ordinal);
        var pages = Directory.GetFiles(RepositoryFiles.Path("docs"), "*.md").Select(Path.GetFileName).ToList();
        Assert.NotEmpty(pages);
        var unlinked = pages.Where(p => !linked.Contains(p!)).ToList();
        Assert.True(unlinked.Count == 0, "README.md does not link: " + string.Join(", ", unlinked));
    }

    [Fact]
    public void Relative_links_in_readme_and_docs_point_at_files_that_exist()
    {
        var broken = new List<string>();
        foreach (var file in Directory.GetFiles(RepositoryFiles.Path("docs"), "*.md").Append(RepositoryFiles.Path("README.md")))
        {
            foreach (Match link in MarkdownLink().Matches(File.ReadAllText(file)))
            {
                string target = link.Groups[1].Value.Split('#')[0];
                if (target.Length == 0 || target.Contains("://", StringComparison.Ordinal) || target.StartsWith("mailto:", StringComparison.Ordinal))
                    continue;
                string path = Path.GetFullPath(Path.Combine(Path.GetDirectoryName(file)!, target));
                if (!File.Exists(path) && !Directory.Exists(path))
                    broken.Add($"{Path.GetRelativePath(RepositoryFiles.Root, file)}: {link.Groups[1].Value}");
            }
        }
        Assert.Empty(broken);
    }

    [Fact]
    public void No_patch_files_are_in_the_tree()
    {
        string[] skipped = ["bin", "obj", "node_modules", ".data", "artifacts", ".git", ".run"];
        var found = new List<string>();
        var pending = new Stack<string>([RepositoryFiles.Root]);
        while (pending.TryPop(out var directory))
        {
            foreach (var child in Directory.EnumerateDirectories(directory).Where(d => !skipped.Contains(Path.GetFileName(d))))
                pending.Push(child);
            found.AddRange(Directory.EnumerateFiles(directory).Where(f => Path.GetExtension(f) is ".patch" or ".diff" or ".orig" or ".rej")
                .Select(f => Path.GetRelativePath(RepositoryFiles.Root, f)));
        }
        Assert.Empty(found);
    }

    [GeneratedRegex(@"docs/([\w-]+\.md)")]
    private static partial Regex DocsLink();

    [GeneratedRegex(@"\]\(([^)\s]+)\)")]
    private static partial Regex MarkdownLink();
}
