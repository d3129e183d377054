using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace AnomalyVae.Tests;

/// <summary>A logger provider that keeps every formatted message (with its exception text), for tests that read logs.</summary>
public sealed class LogCapture : ILoggerProvider
{
    private readonly ConcurrentQueue<(LogLevel Level, string Category, string Text)> _entries = new();

    public IReadOnlyList<(LogLevel Level, string Category, string Text)> Entries => [.. _entries];

    /// <summary>Everything logged, one entry a line, as a single text to search.</summary>
    public string AllText => string.Join('\n', _entries.Select(e => $"{e.Level} {e.Category}: {e.Text}"));

    public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);

    public void Dispose()
    {
    }

    private sealed class Logger(LogCapture owner, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel != LogLevel.None;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            owner._entries.Enqueue((logLevel, category, formatter(state, exception) + (exception is null ? "" : "\n" + exception)));
    }
}
