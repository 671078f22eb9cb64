package dev.specula.cli;

import picocli.CommandLine;
import picocli.CommandLine.Command;

/** The `specula` command line. */
@Command(name = "specula", mixinStandardHelpOptions = true, versionProvider = VersionProvider.class,
        description = "Lossless speculative decoding for Llama-family models.",
        subcommands = {InfoCommand.class, DemoCommand.class, RunCommand.class, ChatCommand.class, BenchCommand.class, ServeCommand.class, MakeTestModelCommand.class, CommandLine.HelpCommand.class})
public final class SpeculaCli implements Runnable {
    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @CommandLine.Option(names = "--debug", scope = CommandLine.ScopeType.INHERIT,
            description = "On an error, print its stack trace too.")
    boolean debug;

    @Override
    public void run() {
        spec.commandLine().usage(System.out);
    }

    public static void main(String[] args) {
        System.exit(commandLine().execute(args));
    }

    /**
     * The command line: option values checked by {@link OptionRules} before a command runs, and every error
     * reported as {@link CliErrors} says (one line for the user's mistakes, exit 2 for usage and 1 otherwise).
     */
    static CommandLine commandLine() {
        CommandLine cli = new CommandLine(new SpeculaCli());
        cli.setExecutionStrategy(parsed -> {
            OptionRules.check(parsed);
            return new CommandLine.RunLast().execute(parsed);
        });
        cli.setParameterExceptionHandler(CliErrors::handleUsage);
        cli.setExecutionExceptionHandler(CliErrors::handleExecution);
        return cli;
    }
}
