package dev.specula.cli;

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
        System.exit(new CommandLine(new SpeculaCli()).execute(args));
    }
}
