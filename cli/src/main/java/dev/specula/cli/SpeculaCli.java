package dev.specula.cli;

import dev.specula.memory.MemoryBudgetException;
import dev.specula.nativeapi.SpeculaException;
import dev.specula.nativeapi.Status;
import picocli.CommandLine;
import picocli.CommandLine.Command;

/** The `specula` command line. */
@Command(name = "specula", mixinStandardHelpOptions = true, versionProvider = VersionProvider.class,
        description = "Lossless speculative decoding for Llama-family models.",
        subcommands = {InfoCommand.class, DemoCommand.class, RunCommand.class, ChatCommand.class, BenchCommand.class, MakeTestModelCommand.class, CommandLine.HelpCommand.class})
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

    /**
     * The command line, with a refused memory budget or a backend this machine cannot run reported as its message
     * alone: those are verdicts about the machine, not bugs.
     */
    static CommandLine commandLine() {
        CommandLine cli = new CommandLine(new SpeculaCli());
        cli.setExecutionExceptionHandler((e, line, parsed) -> {
            boolean verdict = e instanceof MemoryBudgetException
                    || (e instanceof SpeculaException se && se.status() == Status.BACKEND_UNAVAILABLE);
            if (!verdict) throw e;
            line.getErr().println("specula: " + e.getMessage());
            line.getErr().flush();
            return 2;
        });
        return cli;
    }
}
