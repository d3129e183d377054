using System.CommandLine;
using AnomalyVae.Cli;
using AnomalyVae.Tools;

var root = new RootCommand("AnomalyVae developer tools: synthetic labelled streams and benchmarks.")
{
    GenerateCommand.Create(),
    BenchCommands.Bench(),
};
return CliRun.Invoke(root, args);
