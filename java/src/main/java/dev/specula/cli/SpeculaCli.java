package dev.specula.cli;

import dev.specula.engine.MemoryBudgetException;
import picocli.CommandLine;
import picocli.CommandLine.Command;

/** The `specula` command line. */
@Command(name = "specula", mixinStandardHelpOptions = true, versionProvider = VersionProvider.class,
        description = "Lossless speculative decoding for Llama-family models.",
        subcommands = {InfoCommand.class, DemoCommand.class, RunCommand.class, BenchCommand.class, MakeTestModelCommand.class, CommandLine.HelpCommand.class})
public final class SpeculaCli implements Runnable {
    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Override
    public void run() {
        spec.commandLine().usage(System.out);
    }

    public static void main(String[] args) {
        System.exit(commandLine().execute(args));
    }

    /** The command line, with a refused memory budget reported as its message alone: it is a verdict, not a bug. */
    static CommandLine commandLine() {
        CommandLine cli = new CommandLine(new SpeculaCli());
        cli.setExecutionExceptionHandler((e, line, parsed) -> {
            if (!(e instanceof MemoryBudgetException)) throw e;
            line.getErr().println("specula: " + e.getMessage());
            line.getErr().flush();
            return 2;
        });
        return cli;
    }
}
