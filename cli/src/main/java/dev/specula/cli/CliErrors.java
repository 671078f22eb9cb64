package dev.specula.cli;

import dev.specula.chat.ChatTemplateException;
import dev.specula.memory.MemoryBudgetException;
import dev.specula.model.ModelFormatException;
import dev.specula.nativeapi.SpeculaException;
import java.io.IOException;
import java.io.PrintWriter;
import java.io.UncheckedIOException;
import java.nio.file.AccessDeniedException;
import java.nio.file.NoSuchFileException;
import java.util.Arrays;
import picocli.CommandLine;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.ParseResult;
import picocli.CommandLine.UnmatchedArgumentException;

/**
 * How the command line reports what went wrong: one line, {@code specula: <message>}, and an exit code.
 *
 * <ul>
 *   <li><b>Usage errors</b>, exit {@value #USAGE}: an unknown option, a missing one, a value it does not take
 *       (picocli's ParameterException, also thrown by {@link OptionRules}).</li>
 *   <li><b>The user's input or this machine</b>, exit {@value #FAILED}: the exception types the library uses
 *       to refuse what it was given or what it cannot do here, see {@link #isUsersProblem}. The message is the
 *       whole report; the trace would only show where in our code the refusal was written.</li>
 *   <li><b>Bugs</b>, exit {@value #FAILED}: anything else (NullPointerException, IllegalStateException from our
 *       own invariants, a native status that means the Java side sent something it should have checked, an
 *       Error). The first line says plainly that it is a bug, and the trace always follows: it is what a bug
 *       report needs, and the run that hit it (a long bench, say) may not be easy to repeat with --debug.</li>
 * </ul>
 * {@code --debug} adds the trace to the first two kinds as well.
 */
final class CliErrors {
    static final int USAGE = 2;
    static final int FAILED = 1;
    static final String PREFIX = "specula: ";

    private CliErrors() {}

    /**
     * Whether an exception reports a problem with what the user gave (a file, a value, a combination) or with
     * this machine (memory, a backend it lacks), rather than a bug of ours:
     * <ul>
     *   <li>{@link IllegalArgumentException}: the library's contract for a value it refuses; the command line
     *       passes the user's values (prompts, paths, names) straight to it;</li>
     *   <li>{@link ModelFormatException}: a file that is not a usable model;</li>
     *   <li>{@link MemoryBudgetException}: the model does not fit the memory available (checked before the
     *       IllegalStateException it extends);</li>
     *   <li>{@link IOException} and {@link UncheckedIOException}: a file that is missing, unreadable or unwritable;</li>
     *   <li>{@link SpeculaException} whose status is about the machine (backend unavailable, unsupported,
     *       out of memory, a device error); the other statuses (invalid argument, invalid handle, out of range,
     *       internal) mean the Java side let through what it should have checked, so they are bugs;</li>
     *   <li>{@link UnsatisfiedLinkError}: no native library for this platform;</li>
     *   <li>{@link ChatTemplateException}: a conversation or chat template that cannot be rendered (the template's
     *       own message when it raised).</li>
     * </ul>
     */
    static boolean isUsersProblem(Throwable e) {
        if (e instanceof MemoryBudgetException || e instanceof ModelFormatException || e instanceof IllegalArgumentException
                || e instanceof ChatTemplateException || e instanceof IOException || e instanceof UncheckedIOException || e instanceof UnsatisfiedLinkError) {
            return true;
        }
        if (e instanceof SpeculaException se) {
            return switch (se.status()) {
                case BACKEND_UNAVAILABLE, UNSUPPORTED, OUT_OF_MEMORY, DEVICE -> true;
                default -> false;
            };
        }
        return false;
    }

    /** The one-line message for a user's problem. */
    static String describe(Throwable e) {
        if (e instanceof NoSuchFileException f) return f.getFile() + ": no such file";
        if (e instanceof AccessDeniedException f) return f.getFile() + ": permission denied";
        if (e instanceof UncheckedIOException u && (u.getMessage() == null || u.getMessage().equals(u.getCause().toString()))) {
            return describe(u.getCause());
        }
        String message = e.getMessage();
        if (message == null || message.isBlank()) return e.getClass().getSimpleName();
        return message.strip().replace('\n', ' ');
    }

    /** Reports an exception a command threw; returns the exit code. */
    static int handleExecution(Exception e, CommandLine line, ParseResult parsed) {
        return report(e, line.getErr(), debug(parsed));
    }

    static int report(Throwable e, PrintWriter err, boolean debug) {
        if (isUsersProblem(e)) {
            err.println(PREFIX + describe(e));
            if (debug) e.printStackTrace(err);
        } else {
            String what = e.getClass().getName() + (e.getMessage() == null ? "" : ": " + e.getMessage().strip());
            err.println(PREFIX + "internal error: " + what.replace('\n', ' ') + " (this is a bug; please report it with the trace below)");
            e.printStackTrace(err);
        }
        err.flush();
        return FAILED;
    }

    /** Reports a usage error: one line naming it, with picocli's suggestions for a mistyped option. */
    static int handleUsage(ParameterException e, String[] args) {
        CommandLine line = e.getCommandLine();
        PrintWriter err = line.getErr();
        StringBuilder message = new StringBuilder(PREFIX);
        var commands = line.getSubcommands().keySet();
        if (e instanceof UnmatchedArgumentException u && !commands.isEmpty() && !u.getUnmatched().isEmpty()
                && !u.getUnmatched().getFirst().startsWith("-")) {
            message.append("unknown command '").append(u.getUnmatched().getFirst()).append("' (commands: ")
                    .append(String.join(", ", commands)).append(')');
        } else {
            message.append(e.getMessage().strip().replace('\n', ' '));
        }
        if (e instanceof UnmatchedArgumentException u && !u.getSuggestions().isEmpty()) {
            message.append("; did you mean ").append(String.join(" or ", u.getSuggestions())).append('?');
        }
        message.append("; see '").append(line.getCommandSpec().qualifiedName()).append(" --help'");
        err.println(message);
        if (Arrays.asList(args).contains("--debug")) e.printStackTrace(err);
        err.flush();
        return USAGE;
    }

    /** Whether --debug was given, before the command's name or after it. */
    static boolean debug(ParseResult parsed) {
        for (ParseResult p = parsed; p != null; p = p.subcommand()) {
            if (p.hasMatchedOption("--debug")) return true;
        }
        return false;
    }
}
