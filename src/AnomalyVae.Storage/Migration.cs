using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;

namespace AnomalyVae.Storage;

/// <summary>
/// One versioned SQL migration, named <c>NNNN_name.sql</c> (schemas/migrations/). Its checksum is the SHA-256 of
/// its text with line endings normalized to LF and without a byte-order mark, so a checkout with CRLF line
/// endings does not look like an edited migration.
/// </summary>
public sealed partial class Migration
{
    /// <summary>Creates a migration from its file name and SQL text.</summary>
    /// <exception cref="SchemaMigrationException">The file name is not NNNN_name.sql (lowercase name) or the SQL is empty.</exception>
    public Migration(string fileName, string sql)
    {
        ArgumentNullException.ThrowIfNull(fileName);
        ArgumentNullException.ThrowIfNull(sql);
        var match = FileNamePattern().Match(fileName);
        if (!match.Success)
            throw new SchemaMigrationException($"migration file '{fileName}' is not named like 0001_create_things.sql (4-digit version, lowercase name)");
        var normalized = sql.TrimStart('\uFEFF').ReplaceLineEndings("\n");
        if (string.IsNullOrWhiteSpace(normalized))
            throw new SchemaMigrationException($"migration {fileName} is empty");

        FileName = fileName;
        Version = int.Parse(match.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        Sql = normalized;
        Checksum = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(normalized)));
    }

    /// <summary>The version (the file name's number); migrations apply in ascending version order.</summary>
    public int Version { get; }

    /// <summary>The file name, e.g. 0001_anomalies.sql.</summary>
    public string FileName { get; }

    /// <summary>The SQL text (LF line endings).</summary>
    public string Sql { get; }

    /// <summary>SHA-256 of <see cref="Sql"/>, lowercase hex.</summary>
    public string Checksum { get; }

    /// <inheritdoc/>
    public override string ToString() => FileName;

    [GeneratedRegex(@"^([0-9]{4})_[a-z0-9_]+\.sql$", RegexOptions.CultureInvariant)]
    private static partial Regex FileNamePattern();
}
