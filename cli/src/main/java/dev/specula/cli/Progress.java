package dev.specula.cli;

import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Progress of a long command on standard error. On a terminal it is one line rewritten in place ({@code \r}); to a
 * file or a pipe (a CI log, {@code 2> log}) it is a plain line at every tenth of the work and at the end, so the log
 * stays readable and short.
 */
final class Progress {
    private final PrintWriter err;
    private final boolean terminal;
    private final String unit;
    private final int total;
    private int lastTenth;
    private boolean lineOpen;

    /** unit: what is counted, in the plural ("questions"). */
    Progress(PrintWriter err, boolean terminal, String unit, int total) {
        this.err = err;
        this.terminal = terminal;
        this.unit = unit;
        this.total = total;
    }

    /** Progress to standard error (err), in the form its kind of output takes. */
    static Progress toStandardError(PrintWriter err, String unit, int total) {
        return new Progress(err, standardErrorIsTerminal(), unit, total);
    }

    /**
     * Whether standard error is a terminal. Linux says what file descriptor 2 is; elsewhere the console is asked,
     * which only knows about standard input and output.
     */
    static boolean standardErrorIsTerminal() {
        try {
            String target = Files.readSymbolicLink(Path.of("/proc/self/fd/2")).toString();
            return target.startsWith("/dev/pts/") || target.startsWith("/dev/tty");
        } catch (Exception e) {
            java.io.Console console = System.console();
            return console != null && console.isTerminal();
        }
    }

    /** done of the total are finished; note (may be empty) follows the count. */
    void update(int done, String note) {
        String line = done + "/" + total + " " + unit + (note.isEmpty() ? "" : " (" + note + ")");
        if (terminal) {
            err.print("\r" + line);
            lineOpen = true;
        } else {
            int tenth = total == 0 ? 10 : (int) (10L * done / total);
            if (tenth <= lastTenth && done != total) return;
            lastTenth = tenth;
            err.println(line);
        }
        err.flush();
    }

    /** Ends the progress line on a terminal. */
    void finish() {
        if (lineOpen) err.println();
        lineOpen = false;
        err.flush();
    }
}
