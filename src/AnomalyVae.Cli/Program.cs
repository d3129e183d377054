using System.CommandLine;
using AnomalyVae.Cli;

var root = new RootCommand("AnomalyVae: anomaly detection for tabular and sensor records with variational autoencoders.")
{
    TrainCommands.Spec(),
    TrainCommands.Train(),
    ScoreCommands.Score(),
    ScoreCommands.Evaluate(),
    ScoreCommands.Encode(),
    GenerativeCommands.Sample(),
    GenerativeCommands.Interpolate(),
    ServeCommands.Serve(),
    ServeCommands.Version(),
    ServeCommands.Db(),
    ModelsCommands.Create(),
    RetrainCommands.Retrain(),
    RetrainCommands.Recalibrate(),
    AnomaliesCommands.Create(),
    IncidentsCommands.Create(),
    PartitionsCommands.Create(),
    ApiCommand.Create(),
};
return CliRun.Invoke(root, args);
