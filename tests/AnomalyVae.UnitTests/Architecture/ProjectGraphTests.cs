using System.Text.RegularExpressions;
using System.Xml.Linq;
using AnomalyVae.Tests;

namespace AnomalyVae.UnitTests.Architecture;

/// <summary>The project graph drawn in docs/architecture.md is the one the project files build.</summary>
public sealed partial class ProjectGraphTests
{
    private static readonly string[] ProductFolders = ["src", "tools"];

    [Fact]
    public void Project_references_are_exactly_the_documented_ones()
    {
        var documented = DocumentedReferences();
        var built = BuiltReferences();

        Assert.Equal(documented.Keys.Order(), built.Keys.Order());
        foreach (var (project, references) in built)
            Assert.True(documented[project].SetEquals(references),
                $"{project} references {Describe(references)}; docs/architecture.md allows {Describe(documented[project])}.");
    }

    [Fact]
    public void The_scoring_path_does_not_reach_the_training_engine()
    {
        var built = BuiltReferences();
        foreach (var project in new[] { "AnomalyVae.Model", "AnomalyVae.Events", "AnomalyVae.Inference", "AnomalyVae.Storage", "AnomalyVae.Api" })
            Assert.DoesNotContain("Training", Closure(built, project));
    }

    [Fact]
    public void Every_source_file_declares_its_projects_namespace()
    {
        var wrong = new List<string>();
        foreach (var folder in ProductFolders)
        {
            foreach (var project in Directory.GetDirectories(RepositoryFiles.Path(folder), "AnomalyVae.*"))
            {
                string name = Path.GetFileName(project);
                foreach (var file in Directory.EnumerateFiles(project, "*.cs", SearchOption.AllDirectories))
                {
                    if (file.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}", StringComparison.Ordinal) ||
                        file.Contains($"{Path.DirectorySeparatorChar}bin{Path.DirectorySeparatorChar}", StringComparison.Ordinal))
                        continue;
                    var match = NamespaceLine().Match(File.ReadAllText(file));
                    if (match.Success && match.Groups[1].Value != name && !match.Groups[1].Value.StartsWith(name + ".", StringComparison.Ordinal))
                        wrong.Add($"{Path.GetRelativePath(RepositoryFiles.Root, file)}: {match.Groups[1].Value}");
                }
            }
        }
        Assert.Empty(wrong);
    }

    private static Dictionary<string, HashSet<string>> DocumentedReferences()
    {
        string doc = File.ReadAllText(RepositoryFiles.Path("docs", "architecture.md"));
        var block = ReferencesBlock().Match(doc);
        Assert.True(block.Success, "docs/architecture.md has no ```references block.");
        var graph = new Dictionary<string, HashSet<string>>(StringComparer.Ordinal);
        foreach (var line in block.Groups[1].Value.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var parts = line.Split("->", StringSplitOptions.TrimEntries);
            Assert.Equal(2, parts.Length);
            graph[parts[0]] = [.. parts[1].Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)];
        }
        return graph;
    }

    private static Dictionary<string, HashSet<string>> BuiltReferences()
    {
        var graph = new Dictionary<string, HashSet<string>>(StringComparer.Ordinal);
        foreach (var folder in ProductFolders)
        {
            foreach (var file in Directory.EnumerateFiles(RepositoryFiles.Path(folder), "AnomalyVae.*.csproj", SearchOption.AllDirectories))
            {
                var references = XDocument.Load(file).Descendants("ProjectReference")
                    .Select(r => Path.GetFileNameWithoutExtension(r.Attribute("Include")!.Value))
                    .Select(n => n["AnomalyVae.".Length..]);
                graph[Path.GetFileNameWithoutExtension(file)] = [.. references];
            }
        }
        return graph;
    }

    private static HashSet<string> Closure(Dictionary<string, HashSet<string>> graph, string project)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var stack = new Stack<string>(graph[project]);
        while (stack.TryPop(out var next))
        {
            if (seen.Add(next))
            {
                foreach (var reference in graph["AnomalyVae." + next])
                    stack.Push(reference);
            }
        }
        return seen;
    }

    private static string Describe(IEnumerable<string> names) => names.Any() ? string.Join(", ", names.Order()) : "nothing";

    [GeneratedRegex(@"```references\n(.*?)```", RegexOptions.Singleline)]
    private static partial Regex ReferencesBlock();

    [GeneratedRegex(@"^namespace\s+([\w.]+);", RegexOptions.Multiline)]
    private static partial Regex NamespaceLine();
}
