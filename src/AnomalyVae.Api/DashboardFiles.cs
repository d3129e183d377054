using Microsoft.AspNetCore.Http;

namespace AnomalyVae.Api;

/// <summary>
/// The dashboard's static files, from the "dashboard" folder next to the binaries (the build copies our page and the
/// chart library from the npm packages there). Only files present at start are served, by exact name, so no request
/// path reaches the file system.
/// </summary>
public sealed class DashboardFiles
{
    /// <summary>Folder, relative to the application's base directory, that holds the dashboard.</summary>
    public const string FolderName = "dashboard";

    private static readonly Dictionary<string, string> s_contentTypes = new(StringComparer.OrdinalIgnoreCase)
    {
        [".html"] = "text/html; charset=utf-8",
        [".js"] = "text/javascript; charset=utf-8",
        [".css"] = "text/css; charset=utf-8",
        [".svg"] = "image/svg+xml",
        [".png"] = "image/png",
        [".ico"] = "image/x-icon",
    };

    private readonly Dictionary<string, (string Path, string ContentType)> _files;

    public DashboardFiles(string root)
    {
        Root = Path.GetFullPath(root);
        _files = new Dictionary<string, (string, string)>(StringComparer.Ordinal);
        if (!Directory.Exists(Root))
            return;
        foreach (var file in Directory.EnumerateFiles(Root, "*", SearchOption.AllDirectories))
        {
            if (s_contentTypes.TryGetValue(Path.GetExtension(file), out var type))
                _files[Path.GetRelativePath(Root, file).Replace('\\', '/')] = (file, type);
        }
    }

    public string Root { get; }

    /// <summary>Relative names of the files served.</summary>
    public IReadOnlyCollection<string> Names => _files.Keys;

    public static DashboardFiles FromOutputDirectory() => new(Path.Combine(AppContext.BaseDirectory, FolderName));

    public IResult Serve(string name)
    {
        if (_files.TryGetValue(name, out var file))
            return Results.File(file.Path, file.ContentType);
        return name == "index.html"
            ? Results.Problem($"The dashboard is not installed in {Root}; build the service project after deploy/local/dashboard-assets.sh.", statusCode: StatusCodes.Status404NotFound, title: "Dashboard missing")
            : Results.Problem($"No dashboard file {AnomalyApi.Quote(name)}.", statusCode: StatusCodes.Status404NotFound, title: "Not found");
    }
}
