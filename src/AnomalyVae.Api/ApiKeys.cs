using System.Security.Cryptography;
using System.Text;

namespace AnomalyVae.Api;

/// <summary>
/// Checks API keys without leaking them: keys are compared as SHA-256 digests in constant time. Stored feedback
/// identifies a key by its configured name ("api-key:ops"), or for an unnamed key by an HMAC-SHA256 under the
/// server-side <see cref="ApiOptions.KeyIdSecret"/> ("api-key:1a2b3c4d"; without the secret an offline guess of the
/// key cannot be checked against it), or when no secret is configured by its position ("api-key:#0").
/// </summary>
public sealed class ApiKeys
{
    private readonly (byte[] Digest, string Id)[] _keys;

    public ApiKeys(IEnumerable<string> keys, IReadOnlyDictionary<string, string>? namedKeys = null, string? idSecret = null)
    {
        ArgumentNullException.ThrowIfNull(keys);
        var secret = string.IsNullOrEmpty(idSecret) ? null : Encoding.UTF8.GetBytes(idSecret);
        var list = new List<(byte[], string)>();
        foreach (var (name, key) in namedKeys ?? new Dictionary<string, string>())
        {
            if (!string.IsNullOrWhiteSpace(key))
                list.Add((Digest(key), "api-key:" + name));
        }
        var index = 0;
        foreach (var key in keys)
        {
            if (string.IsNullOrWhiteSpace(key))
                continue;
            var id = secret is null
                ? "api-key:#" + index.ToString(System.Globalization.CultureInfo.InvariantCulture)
                : "api-key:" + Convert.ToHexStringLower(HMACSHA256.HashData(secret, Encoding.UTF8.GetBytes(key.Trim())).AsSpan(0, 4));
            list.Add((Digest(key), id));
            index++;
        }
        _keys = [.. list];
    }

    public static ApiKeys FromOptions(ApiOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return new ApiKeys(options.Keys, options.NamedKeys, options.KeyIdSecret);
    }

    public bool AnyConfigured => _keys.Length > 0;

    /// <summary>The key's id when it is one of the configured keys; null otherwise.</summary>
    public string? Identify(string? key)
    {
        if (string.IsNullOrEmpty(key))
            return null;
        var digest = Digest(key);
        // Look at every configured key so timing does not tell which one matched.
        string? id = null;
        foreach (var known in _keys)
        {
            if (CryptographicOperations.FixedTimeEquals(known.Digest, digest))
                id ??= known.Id;
        }
        return id;
    }

    private static byte[] Digest(string key) => SHA256.HashData(Encoding.UTF8.GetBytes(key.Trim()));
}
