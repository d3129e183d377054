using Microsoft.Extensions.Configuration;

namespace AnomalyVae.Streaming;

/// <summary>
/// Secrets from files: the environment variable ANOMALYVAE_SECRETS_DIR names a directory with one file per
/// configuration key, "__" for ":" in the name (Postgres__ConnectionString, Api__Keys__0, Api__KeyIdSecret,
/// Kafka__Properties__ssl.key.password), which is how Docker and Kubernetes mount secrets. A trailing newline is
/// dropped. Those files override JSON files and the environment, so a secret never has to sit in a config file.
/// </summary>
public static class SecretFiles
{
    public const string DirectoryVariable = "ANOMALYVAE_SECRETS_DIR";

    /// <summary>Adds the files of ANOMALYVAE_SECRETS_DIR when it is set.</summary>
    /// <exception cref="ServiceConfigurationException">The variable names no directory.</exception>
    public static IConfigurationBuilder AddSecretFiles(this IConfigurationBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        var directory = Environment.GetEnvironmentVariable(DirectoryVariable);
        if (string.IsNullOrWhiteSpace(directory))
            return builder;
        var full = Path.GetFullPath(directory);
        if (!Directory.Exists(full))
            throw new ServiceConfigurationException($"{DirectoryVariable} is {full}, which is not a directory.");
        return builder.AddKeyPerFile(full, optional: false);
    }
}
