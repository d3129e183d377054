using AnomalyVae.Storage;
using AnomalyVae.Tests;
using Npgsql;

namespace AnomalyVae.UnitTests.Storage;

public class MigrationTests
{
    private static string MigrationsDirectory() => RepositoryFiles.Path("schemas", "migrations");

    [Fact]
    public void TheAssemblyCarriesEveryMigrationFileUnchanged()
    {
        var files = Directory.GetFiles(MigrationsDirectory(), "*.sql").Order(StringComparer.Ordinal).ToArray();
        var embedded = SchemaMigrator.EmbeddedMigrations();
        Assert.NotEmpty(files);
        Assert.Equal(files.Select(Path.GetFileName), embedded.Select(m => m.FileName));
        for (var i = 0; i < files.Length; i++)
            Assert.Equal(new Migration(Path.GetFileName(files[i]), File.ReadAllText(files[i])).Checksum, embedded[i].Checksum);
        // Ascending and distinct; gaps are allowed (0008 is reserved by another branch while 0009 is here).
        Assert.Equal(embedded.Select(m => m.Version).Distinct().Order(), embedded.Select(m => m.Version));
        Assert.Contains(embedded, m => m.FileName == "0009_partitioned_anomalies.sql");
        Assert.Contains(embedded, m => m.FileName == "0001_anomalies.sql");
    }

    [Fact]
    public void ChecksumIgnoresLineEndingsAndByteOrderMarkButNotContent()
    {
        var lf = new Migration("0001_a.sql", "CREATE TABLE a (x int);\nCREATE TABLE b (y int);\n");
        Assert.Equal(lf.Checksum, new Migration("0001_a.sql", "CREATE TABLE a (x int);\r\nCREATE TABLE b (y int);\r\n").Checksum);
        Assert.Equal(lf.Checksum, new Migration("0001_a.sql", "\uFEFFCREATE TABLE a (x int);\nCREATE TABLE b (y int);\n").Checksum);
        Assert.NotEqual(lf.Checksum, new Migration("0001_a.sql", "CREATE TABLE a (x bigint);\nCREATE TABLE b (y int);\n").Checksum);
        Assert.Matches("^[0-9a-f]{64}$", lf.Checksum);
        Assert.Equal(1, lf.Version);
    }

    [Theory]
    [InlineData("1_a.sql")]
    [InlineData("0001-a.sql")]
    [InlineData("0001_A.sql")]
    [InlineData("0001_a.SQL")]
    [InlineData("0001_.sql")]
    [InlineData("a_0001.sql")]
    public void FileNamesMustBeVersioned(string name)
    {
        var e = Assert.Throws<SchemaMigrationException>(() => new Migration(name, "SELECT 1"));
        Assert.Contains(name, e.Message);
    }

    [Fact]
    public void EmptyMigrationsAreRefused() =>
        Assert.Throws<SchemaMigrationException>(() => new Migration("0001_a.sql", " \n "));

    [Fact]
    public void VersionsMayLeaveGapsButNeverRepeat()
    {
        using var dataSource = NpgsqlDataSource.Create("Host=localhost");
        var one = new Migration("0001_a.sql", "SELECT 1");
        var two = new Migration("0002_b.sql", "SELECT 2");
        var three = new Migration("0003_c.sql", "SELECT 3");
        Assert.Equal([1, 2, 3], new SchemaMigrator(dataSource, [three, one, two]).Migrations.Select(m => m.Version));
        // A number reserved by another branch leaves a gap; order is still by version.
        Assert.Equal([1, 3], new SchemaMigrator(dataSource, [three, one]).Migrations.Select(m => m.Version));
        var repeat = Assert.Throws<SchemaMigrationException>(() => new SchemaMigrator(dataSource, [one, two, new Migration("0002_again.sql", "SELECT 2")]));
        Assert.Contains("0002_again.sql", repeat.Message);
    }
}
