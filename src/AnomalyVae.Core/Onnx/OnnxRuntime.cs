using System.Runtime.InteropServices;
using System.Text;
using Microsoft.Extensions.Logging;

namespace AnomalyVae.Onnx;

/// <summary>
/// The process's ONNX Runtime: which native library is loaded, its C API table, and the one <c>OrtEnv</c>.
/// </summary>
/// <remarks>
/// Library resolution, first match wins and an explicitly configured path never silently falls back:
/// <list type="number">
/// <item>the path passed to <see cref="Load"/> (or <see cref="OnnxSessionOptions.LibraryPath"/>);</item>
/// <item>the environment variable <c>ANOMALYVAE_ONNXRUNTIME</c>;</item>
/// <item><c>${ANOMALYVAE_CACHE:-~/.cache/anomalyvae}/onnxruntime/libonnxruntime.so.1</c> (deploy/local/setup.sh puts it there),
/// then the system's <c>libonnxruntime.so.1</c> (dynamic-linker search path).</item>
/// </list>
/// A path may name the library file or the folder holding it. One library per process: once loaded, asking for
/// a different file is an error. Everything here is thread-safe.
/// </remarks>
public static unsafe class OnnxRuntime
{
    public const string LibraryPathVariable = "ANOMALYVAE_ONNXRUNTIME";
    public const string CacheVariable = "ANOMALYVAE_CACHE";
    public const string LibraryFileName = "libonnxruntime.so.1";

    private const int LoggingLevelWarning = 2; // ORT_LOGGING_LEVEL_WARNING
    private const int ArenaAllocator = 1; // OrtArenaAllocator
    private const int MemTypeDefault = 0; // OrtMemTypeDefault

    private static readonly Lock Gate = new();
    private static volatile OrtRuntime? _current;
    private static volatile ILogger? _logger;

    [ThreadStatic]
    private static List<(LogLevel Level, string Message)>? _captured;

    /// <summary>
    /// Where ONNX Runtime's own log lines (warning and worse) go; null writes them to standard error. The
    /// environment is process-wide, so this is too: the host sets it once at start-up.
    /// </summary>
    public static ILogger? Logger
    {
        get => _logger;
        set => _logger = value;
    }

    /// <summary>The loaded runtime's version string, e.g. "1.30.0" (loads the default library if needed).</summary>
    public static string Version => Ensure(null).Version;

    /// <summary>Where the loaded library came from (loads the default library if needed).</summary>
    public static string LibraryPath => Ensure(null).LibraryPath;

    /// <summary>
    /// Loads ONNX Runtime (once per process) and creates the shared environment. Idempotent for the same library.
    /// </summary>
    /// <param name="libraryPath">Library file or its folder; null for the default resolution order.</param>
    /// <exception cref="DllNotFoundException">No usable library; the message lists every path tried.</exception>
    /// <exception cref="InvalidOperationException">A different library is already loaded in this process.</exception>
    public static void Load(string? libraryPath = null) => Ensure(libraryPath);

    /// <summary>
    /// Execution providers compiled into the loaded library. Not a GPU detector: CUDA is listed even where its
    /// libraries or a device are missing, which only appending the provider reveals.
    /// </summary>
    public static IReadOnlyList<string> AvailableProviders()
    {
        var runtime = Ensure(null);
        var api = runtime.Api;
        byte** names;
        int count;
        api.Check(api.GetAvailableProviders(&names, &count), "Listing execution providers");
        try
        {
            var result = new string[count];
            for (var i = 0; i < count; i++)
            {
                result[i] = Marshal.PtrToStringUTF8((nint)names[i]) ?? "";
            }

            return result;
        }
        finally
        {
            api.Check(api.ReleaseAvailableProviders(names, count));
        }
    }

    internal static OrtRuntime Ensure(string? libraryPath)
    {
        var current = _current;
        if (current is not null && string.IsNullOrWhiteSpace(libraryPath))
        {
            return current;
        }

        lock (Gate)
        {
            var candidates = Candidates(libraryPath, Environment.GetEnvironmentVariable, HomeDirectory());
            current = _current;
            if (current is not null)
            {
                if (string.IsNullOrWhiteSpace(libraryPath))
                {
                    return current;
                }

                var requested = candidates[0];
                if (!File.Exists(requested.Path))
                {
                    throw NotFound([$"{requested.Path} ({requested.Origin}): no such file"]);
                }

                if (!SameFile(requested.Path, current.LibraryPath))
                {
                    throw new InvalidOperationException(
                        $"ONNX Runtime is already loaded from {current.LibraryPath}; a process can use only one library, " +
                        $"so {requested.Path} cannot be loaded too.");
                }

                return current;
            }

            current = LoadFirst(candidates);
            _current = current;
            return current;
        }
    }

    /// <summary>The ordered library candidates for a configuration; see the class remarks.</summary>
    internal static IReadOnlyList<LibraryCandidate> Candidates(string? explicitPath, Func<string, string?> environment, string home)
    {
        if (!string.IsNullOrWhiteSpace(explicitPath))
        {
            return [new LibraryCandidate(FileOrFolder(explicitPath), "explicit path", ByName: false)];
        }

        var fromEnvironment = environment(LibraryPathVariable);
        if (!string.IsNullOrWhiteSpace(fromEnvironment))
        {
            return [new LibraryCandidate(FileOrFolder(fromEnvironment), $"${LibraryPathVariable}", ByName: false)];
        }

        var cache = environment(CacheVariable);
        var cacheOrigin = $"${CacheVariable}";
        if (string.IsNullOrWhiteSpace(cache))
        {
            cache = Path.Combine(home, ".cache", "anomalyvae");
            cacheOrigin = "default cache";
        }

        return
        [
            new LibraryCandidate(Path.Combine(cache, "onnxruntime", LibraryFileName), cacheOrigin, ByName: false),
            new LibraryCandidate(LibraryFileName, "system library search path", ByName: true),
        ];
    }

    private static OrtRuntime LoadFirst(IReadOnlyList<LibraryCandidate> candidates)
    {
        var attempts = new List<string>();
        foreach (var candidate in candidates)
        {
            if (!candidate.ByName && !File.Exists(candidate.Path))
            {
                attempts.Add($"{candidate.Path} ({candidate.Origin}): no such file");
                continue;
            }

            nint library;
            try
            {
                library = NativeLibrary.Load(candidate.ByName ? candidate.Path : Path.GetFullPath(candidate.Path));
            }
            catch (Exception e) when (e is DllNotFoundException or BadImageFormatException)
            {
                attempts.Add($"{candidate.Path} ({candidate.Origin}): {FirstLine(e.Message)}");
                continue;
            }

            try
            {
                return Initialize(library, candidate.ByName ? $"{candidate.Path} ({candidate.Origin})" : Path.GetFullPath(candidate.Path));
            }
            catch
            {
                NativeLibrary.Free(library);
                throw;
            }
        }

        throw NotFound(attempts);
    }

    private static OrtRuntime Initialize(nint library, string libraryPath)
    {
        if (!NativeLibrary.TryGetExport(library, "OrtGetApiBase", out var getApiBase))
        {
            throw new DllNotFoundException($"{libraryPath} is not ONNX Runtime: it has no OrtGetApiBase export.");
        }

        // OrtApiBase is frozen by ORT: { GetApi(uint version), GetVersionString() }.
        var apiBase = ((delegate* unmanaged<nint*>)getApiBase)();
        var getApi = (delegate* unmanaged<uint, nint*>)apiBase[0];
        var getVersionString = (delegate* unmanaged<byte*>)apiBase[1];
        var version = Marshal.PtrToStringUTF8((nint)getVersionString()) ?? "unknown";
        var table = getApi(OrtApi.Version);
        if (table == null)
        {
            throw new DllNotFoundException(
                $"ONNX Runtime {version} at {libraryPath} does not provide C API version {OrtApi.Version}; install a newer ONNX Runtime (deploy/local/setup.sh).");
        }

        var api = new OrtApi(table);
        VerifyTable(api, version, libraryPath);

        nint env;
        fixed (byte* logId = "AnomalyVae\0"u8)
        {
            api.Check(api.CreateEnvWithCustomLogger(&OnOrtLog, 0, LoggingLevelWarning, logId, &env), "Creating the ONNX Runtime environment");
        }

        var envHandle = OrtHandle.Own(env, api.ReleaseEnv);
        nint memoryInfo;
        api.Check(api.CreateCpuMemoryInfo(ArenaAllocator, MemTypeDefault, &memoryInfo), "Creating CPU memory info");
        var memoryInfoHandle = OrtHandle.Own(memoryInfo, api.ReleaseMemoryInfo);
        nint allocator;
        api.Check(api.GetAllocatorWithDefaultOptions(&allocator), "Getting the default allocator");
        return new OrtRuntime(api, envHandle, memoryInfoHandle, allocator, version, libraryPath);
    }

    /// <summary>
    /// Holds back ORT's log lines raised on this thread until <see cref="EndCapture"/>, so that a probe which is
    /// expected to fail (appending CUDA) is reported once by its caller instead of by ORT as an error.
    /// </summary>
    internal static void BeginCapture() => _captured = [];

    /// <summary>Stops capturing on this thread and returns what ORT logged meanwhile.</summary>
    internal static IReadOnlyList<(LogLevel Level, string Message)> EndCapture()
    {
        var captured = _captured ?? [];
        _captured = null;
        return captured;
    }

    /// <summary>Writes one ORT log line to <see cref="Logger"/> (or standard error).</summary>
    internal static void Forward(LogLevel level, string message)
    {
        if (_logger is { } logger)
        {
            logger.Log(level, "ONNX Runtime: {OrtMessage}", message);
        }
        else
        {
            Console.Error.WriteLine($"onnxruntime {level}: {message}");
        }
    }

    /// <summary>ORT's OrtLoggingFunction. Runs on ORT's threads: it must never throw into native code.</summary>
    [UnmanagedCallersOnly]
    private static void OnOrtLog(nint param, int severity, byte* category, byte* logId, byte* codeLocation, byte* message)
    {
        try
        {
            var level = severity switch
            {
                0 => LogLevel.Trace,
                1 => LogLevel.Information,
                2 => LogLevel.Warning,
                3 => LogLevel.Error,
                _ => LogLevel.Critical,
            };
            var text = Marshal.PtrToStringUTF8((nint)message) ?? "";
            if (_captured is { } captured)
            {
                captured.Add((level, text));
            }
            else
            {
                Forward(level, text);
            }
        }
        catch (Exception)
        {
            // Losing a log line beats crashing the process from a native callback.
        }
    }

    /// <summary>
    /// Round-trips a status through CreateStatus/GetErrorCode/GetErrorMessage/ReleaseStatus (indices 0, 1, 2, 93),
    /// so a table that does not match our indices fails here with a message instead of corrupting memory later.
    /// </summary>
    private static void VerifyTable(OrtApi api, string version, string libraryPath)
    {
        var probe = "AnomalyVae probe\0"u8;
        fixed (byte* probePtr = probe)
        {
            var status = api.CreateStatus((int)OrtErrorCode.NotImplemented, probePtr);
            if (status == 0)
            {
                throw new DllNotFoundException($"ONNX Runtime {version} at {libraryPath}: the C API table is not the expected layout.");
            }

            var code = api.GetErrorCode(status);
            var message = Marshal.PtrToStringUTF8((nint)api.GetErrorMessage(status));
            api.ReleaseStatus(status);
            if (code != (int)OrtErrorCode.NotImplemented || message != "AnomalyVae probe")
            {
                throw new DllNotFoundException($"ONNX Runtime {version} at {libraryPath}: the C API table is not the expected layout.");
            }
        }
    }

    private static DllNotFoundException NotFound(IReadOnlyList<string> attempts)
    {
        var message = new StringBuilder();
        message.Append("ONNX Runtime native library (").Append(LibraryFileName).Append(") could not be loaded. Tried:");
        foreach (var attempt in attempts)
        {
            message.Append("\n  - ").Append(attempt);
        }

        message.Append("\nRun deploy/local/setup.sh to install it, or set ")
            .Append(LibraryPathVariable)
            .Append(" to the library's path.");
        return new DllNotFoundException(message.ToString());
    }

    private static string FileOrFolder(string path) =>
        Directory.Exists(path) ? Path.Combine(path, LibraryFileName) : path;

    private static bool SameFile(string a, string b)
    {
        static string Resolve(string p)
        {
            var full = Path.GetFullPath(p);
            return File.ResolveLinkTarget(full, returnFinalTarget: true)?.FullName ?? full;
        }

        return File.Exists(b) && string.Equals(Resolve(a), Resolve(b), StringComparison.Ordinal);
    }

    private static string HomeDirectory() =>
        Environment.GetEnvironmentVariable("HOME") is { Length: > 0 } home
            ? home
            : Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);

    private static string FirstLine(string text)
    {
        var end = text.IndexOf('\n', StringComparison.Ordinal);
        return end < 0 ? text : text[..end].TrimEnd();
    }
}

/// <summary>One place the library may be: a file path, or a bare name for the dynamic linker's search.</summary>
internal readonly record struct LibraryCandidate(string Path, string Origin, bool ByName);

/// <summary>The loaded library's table and the process-wide objects created from it; lives until the process exits.</summary>
internal sealed class OrtRuntime(OrtApi api, OrtHandle env, OrtHandle cpuMemoryInfo, nint allocator, string version, string libraryPath)
{
    internal OrtApi Api { get; } = api;

    /// <summary>The single OrtEnv (logging level warning); never released, sessions may outlive any owner.</summary>
    internal OrtHandle Env { get; } = env;

    /// <summary>Describes caller-owned CPU buffers for CreateTensorWithDataAsOrtValue.</summary>
    internal OrtHandle CpuMemoryInfo { get; } = cpuMemoryInfo;

    /// <summary>ORT's default CPU allocator (owned by ORT, never freed); frees strings ORT hands us.</summary>
    internal nint Allocator { get; } = allocator;

    internal string Version { get; } = version;

    internal string LibraryPath { get; } = libraryPath;
}
