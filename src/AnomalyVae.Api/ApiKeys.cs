using System.Security.Cryptography;
using System.Text;

namespace AnomalyVae.Api;

/// <summary>
/// Checks API keys without leaking them: keys are compared as SHA-256 digests in constant time, and a key is
/// identified in stored feedback only by a short prefix of its digest ("api-key:1a2b3c4d"), never by itself.
/// </summary>
public sealed class ApiKeys
{
    private readonly byte[][] _digests;

    public ApiKeys(IEnumerable<string> keys)
    {
        _digests = [.. keys.Where(k => !string.IsNullOrWhiteSpace(k)).Select(k => SHA256.HashData(Encoding.UTF8.GetBytes(k.Trim())))];
    }

    public bool AnyConfigured => _digests.Length > 0;

    /// <summary>The key's id when it is one of the configured keys; null otherwise.</summary>
    public string? Identify(string? key)
    {
        if (string.IsNullOrEmpty(key))
            return null;
        var digest = SHA256.HashData(Encoding.UTF8.GetBytes(key.Trim()));
        // Look at every configured key so timing does not tell which one matched.
        var match = false;
        foreach (var known in _digests)
            match |= CryptographicOperations.FixedTimeEquals(known, digest);
        return match ? "api-key:" + Convert.ToHexStringLower(digest.AsSpan(0, 4)) : null;
    }
}
