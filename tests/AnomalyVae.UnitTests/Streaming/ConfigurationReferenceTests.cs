using System.Collections;
using System.Reflection;
using AnomalyVae.Api;
using AnomalyVae.Streaming;
using AnomalyVae.Tests;

namespace AnomalyVae.UnitTests.Streaming;

/// <summary>Every configuration key the code binds must appear in the configuration reference (docs/configuration.md).</summary>
public sealed class ConfigurationReferenceTests
{
    [Fact]
    public void EveryBoundKeyIsDocumentedInTheReadme()
    {
        var keys = new List<string>();
        Collect("", typeof(ServiceOptions), keys);
        Collect(KafkaOptions.SectionName, typeof(KafkaOptions), keys);
        Collect("Api", typeof(ApiOptions), keys);
        Assert.True(keys.Count > 25, $"only {keys.Count} keys found: the reflection walk is broken");

        string readme = File.ReadAllText(RepositoryFiles.Path("docs", "configuration.md"));
        var missing = keys.Where(k => !readme.Contains($"`{k}", StringComparison.Ordinal) && !readme.Contains($" {k}`", StringComparison.Ordinal)).ToList();
        Assert.True(missing.Count == 0, "docs/configuration.md lacks: " + string.Join(", ", missing));
    }

    /// <summary>Configuration paths the binder reads for <paramref name="type"/> under <paramref name="prefix"/>.</summary>
    private static void Collect(string prefix, Type type, List<string> keys)
    {
        foreach (var property in type.GetProperties(BindingFlags.Public | BindingFlags.Instance))
        {
            var t = Nullable.GetUnderlyingType(property.PropertyType) ?? property.PropertyType;
            string key = prefix.Length == 0 ? property.Name : $"{prefix}:{property.Name}";
            if (t == typeof(string) || t.IsPrimitive || t.IsEnum || t == typeof(decimal) || t == typeof(TimeSpan))
            {
                if (property.CanWrite)
                    keys.Add(key);
            }
            else if (typeof(IDictionary).IsAssignableFrom(t))
            {
                keys.Add(key); // e.g. Kafka:Properties:<name>
            }
            else if (t.IsGenericType && t.GetGenericTypeDefinition() == typeof(List<>))
            {
                var item = t.GetGenericArguments()[0];
                if (item == typeof(string))
                    keys.Add(key);
                else
                    Collect($"{key}:N", item, keys);
            }
            else if (t.IsClass)
            {
                Collect(key, t, keys);
            }
        }
    }
}
