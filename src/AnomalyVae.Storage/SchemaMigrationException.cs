namespace AnomalyVae.Storage;

/// <summary>The database schema cannot be brought up to date: an applied migration was edited, a migration
/// failed, or the migrations shipped with the binary are inconsistent. The message says which file and why.</summary>
public sealed class SchemaMigrationException : Exception
{
    /// <summary>Creates the exception.</summary>
    public SchemaMigrationException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception with its cause.</summary>
    public SchemaMigrationException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
