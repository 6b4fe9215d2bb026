using PoissonFlow.Cli;

return CliApp.Run(args);
