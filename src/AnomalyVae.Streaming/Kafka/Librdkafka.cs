using System.Reflection;
using System.Runtime.InteropServices;
using Confluent.Kafka;

namespace AnomalyVae.Streaming;

/// <summary>
/// Makes Confluent.Kafka load librdkafka.redist's self-contained centos8 build instead of silently falling back to a
/// system librdkafka, and refuses an older librdkafka. Why: docs/deployment.md#kafka-client.
/// </summary>
public static class Librdkafka
{
    /// <summary>The redist file we load; found next to the application or under runtimes/&lt;rid&gt;/native.</summary>
    public const string FileName = "centos8-librdkafka.so";

    private static readonly Lock Gate = new();
    private static bool _installed;

    /// <summary>The librdkafka version Confluent.Kafka was built against (its own major.minor.patch).</summary>
    public static Version Required { get; } = Normalize(typeof(Library).Assembly.GetName().Version!);

    /// <summary>The loaded library's version string, e.g. "2.16.0" (loads it if needed).</summary>
    public static string VersionString
    {
        get
        {
            Install();
            return Library.VersionString;
        }
    }

    /// <summary>
    /// Registers the resolver (once per process; before any Confluent.Kafka client exists) and checks the version:
    /// throws <see cref="InvalidOperationException"/> naming both versions if an older librdkafka got loaded.
    /// </summary>
    public static void Install()
    {
        lock (Gate)
        {
            if (!_installed)
            {
                if (OperatingSystem.IsLinux())
                    NativeLibrary.SetDllImportResolver(typeof(Library).Assembly, Resolve);
                _installed = true;
            }
        }
        // Every time, not once: a process that got the wrong library must keep refusing, not only on its first client.
        CheckVersion(Library.Version, Library.VersionString);
    }

    /// <summary>Throws unless <paramref name="loaded"/> (librdkafka's 0xMMmmrrxx form) is at least <see cref="Required"/>.</summary>
    public static void CheckVersion(int loaded, string loadedText)
    {
        var version = new Version((loaded >> 24) & 0xff, (loaded >> 16) & 0xff, (loaded >> 8) & 0xff);
        if (version < Required)
        {
            throw new InvalidOperationException(
                $"librdkafka {loadedText} is loaded, but Confluent.Kafka {Required} needs librdkafka {Required} or newer. " +
                $"The build output should hold librdkafka.redist's {FileName}; check that it exists and is readable.");
        }
    }

    private static nint Resolve(string name, Assembly assembly, DllImportSearchPath? searchPath)
    {
        if (!name.Contains("rdkafka", StringComparison.Ordinal))
            return 0;
        var root = AppContext.BaseDirectory;
        string[] candidates =
        [
            Path.Combine(root, FileName),
            Path.Combine(root, "runtimes", RuntimeInformation.RuntimeIdentifier, "native", FileName),
            Path.Combine(root, "runtimes", "linux-" + RuntimeInformation.ProcessArchitecture.ToString().ToLowerInvariant(), "native", FileName),
        ];
        foreach (var path in candidates)
        {
            if (File.Exists(path))
                return NativeLibrary.Load(path);
        }
        return 0; // the default search: Install's version check then refuses anything older
    }

    private static Version Normalize(Version v) => new(v.Major, v.Minor, Math.Max(0, v.Build));
}
