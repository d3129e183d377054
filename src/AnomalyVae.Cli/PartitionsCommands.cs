using System.CommandLine;
using System.Globalization;
using AnomalyVae.Storage;
using Microsoft.Extensions.Configuration;

namespace AnomalyVae.Cli;

/// <summary>
/// <c>partitions list|maintain</c>: the daily partitions of anomalies and scoring_stats (migration 0009), and the
/// maintenance serve runs hourly (create ahead, drop what Storage:Retention expired) run once, e.g. from cron when no
/// serve runs.
/// </summary>
internal static class PartitionsCommands
{
    public static Command Create() =>
        new("partitions", "List the daily partitions of anomalies and scoring_stats, or create ahead and drop expired ones now.") { List(), Maintain() };

    private static Command List()
    {
        var command = new Command("list", "Each partition with its range and estimated rows, oldest first.")
        {
            CliDatabase.ConnectionOption, CliDatabase.ConfigOption,
        };
        command.SetAction((ParseResult parse, CancellationToken cancellationToken) => CliDatabase.RunAsync(parse, async dataSource =>
        {
            var maintenance = new PartitionMaintenance(dataSource, new StorageOptions());
            Console.Out.WriteLine($"{"table",-14} {"partition",-24} {"from",-22} {"to",-22} {"rows (est.)",12}");
            foreach (var table in PartitionMaintenance.Tables)
            {
                foreach (var p in await maintenance.ListAsync(table, cancellationToken))
                    Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"{p.Table,-14} {p.Name,-24} {(p.From is { } f ? f.ToString("yyyy-MM-dd HH:mm'Z'", CultureInfo.InvariantCulture) : "(start)"),-22} {p.To:yyyy-MM-dd HH:mm'Z'}      {p.EstimatedRows,12}"));
            }
            return 0;
        }, cancellationToken));
        return command;
    }

    private static Command Maintain()
    {
        var command = new Command("maintain",
            "Create the partitions of today and the next Storage:PartitionsAhead days; drop those older than Storage:Retention:Anomalies / :ScoringStats (from the configuration).")
        {
            CliDatabase.ConnectionOption, CliDatabase.ConfigOption,
        };
        command.SetAction((ParseResult parse, CancellationToken cancellationToken) =>
        {
            var options = new StorageOptions();
            try
            {
                CliDatabase.Configuration(parse).GetSection(StorageOptions.SectionName).Bind(options);
            }
            catch (InvalidOperationException e)
            {
                throw new CliException($"invalid configuration: {e.Message}");
            }
            var problems = options.Problems().ToList();
            if (problems.Count > 0)
                throw new CliException(string.Join(" ", problems));
            return CliDatabase.RunAsync(parse, async dataSource =>
            {
                var result = await new PartitionMaintenance(dataSource, options).RunAsync(cancellationToken);
                foreach (var p in result.Created)
                    Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"created {p.Name} [{p.From:yyyy-MM-dd}, {p.To:yyyy-MM-dd})"));
                foreach (var p in result.Dropped)
                    Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"dropped {p.Name} (before {p.To:yyyy-MM-dd HH:mm'Z'}, about {p.EstimatedRows} rows)"));
                Console.Out.WriteLine($"{result.Created.Count} created, {result.Dropped.Count} dropped");
                return 0;
            }, cancellationToken);
        });
        return command;
    }
}
