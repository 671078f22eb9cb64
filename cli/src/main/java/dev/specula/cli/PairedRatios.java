package dev.specula.cli;

import dev.specula.GenerationRequest;
import dev.specula.GenerationResult;
import dev.specula.SpeculaEngine;
import java.io.IOException;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.SplittableRandom;

/**
 * Speedups of one drafter over plain decoding, one per paired round: each round ran plain decoding and the drafter on
 * the same prompts back to back, in alternating order (plain first, then the drafter first, ...), so a change in the
 * machine's load between rounds touches both sides of a ratio alike. What is reported is the median of the rounds'
 * ratios, which a preempted round does not move, and a 95% bootstrap interval of that median: on a shared machine
 * single runs scatter by 10-30%, and only the interval says whether a drafter is within a few percent of plain.
 */
final class PairedRatios {
    /** Bootstrap resamples; the seed is fixed so that the same ratios always print the same interval. */
    static final int RESAMPLES = 2000;
    private static final long SEED = 12;

    private double[] ratios = new double[8];
    private int size;

    /** Adds one round: plain decoding's seconds over the drafter's (above 1: the drafter was faster). */
    void add(double plainSeconds, double drafterSeconds) {
        if (!(plainSeconds > 0) || !(drafterSeconds > 0)) return; // a round with nothing measured says nothing
        if (size == ratios.length) ratios = Arrays.copyOf(ratios, size * 2);
        ratios[size++] = plainSeconds / drafterSeconds;
    }

    int size() {
        return size;
    }

    /** The median of the rounds' ratios (NaN with none). */
    double median() {
        return median(Arrays.copyOf(ratios, size));
    }

    /**
     * The 2.5th and 97.5th percentiles of the median over {@value #RESAMPLES} resamples of the rounds (with
     * replacement); with a single round, that round twice. NaN twice with none.
     */
    double[] interval95() {
        if (size == 0) return new double[] {Double.NaN, Double.NaN};
        SplittableRandom random = new SplittableRandom(SEED);
        double[] medians = new double[RESAMPLES], sample = new double[size];
        for (int r = 0; r < RESAMPLES; r++) {
            for (int i = 0; i < size; i++) sample[i] = ratios[random.nextInt(size)];
            medians[r] = median(sample);
        }
        Arrays.sort(medians);
        return new double[] {medians[(int) Math.floor(0.025 * (RESAMPLES - 1))], medians[(int) Math.ceil(0.975 * (RESAMPLES - 1))]};
    }

    /** "1.02x [0.99, 1.05]": the median and its interval. */
    String describe() {
        double[] ci = interval95();
        return String.format(java.util.Locale.ROOT, "%.3fx [%.3f, %.3f]", median(), ci[0], ci[1]);
    }

    /** The median of values (sorted in place); NaN when empty. */
    static double median(double[] values) {
        int n = values.length;
        if (n == 0) return Double.NaN;
        Arrays.sort(values);
        return n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
    }

    private static final com.sun.management.OperatingSystemMXBean OS =
            (com.sun.management.OperatingSystemMXBean) java.lang.management.ManagementFactory.getOperatingSystemMXBean();

    /**
     * One request's decoding time: the wall clock of the whole call (scheduling, streaming and the drafter's
     * bookkeeping included) less the prompt's processing; and the CPU time of the process's threads over the
     * decoding, read when the first text arrives and at the end (one CPU-clock read each, none per step): the rate
     * between those reads, over the decoding's wall time. (Taking the prompt's share of the whole call's CPU time by
     * its share of the wall clock instead misjudges drafters with a longer prefill, such as EAGLE, when the two
     * phases get different shares of a busy machine.)
     */
    record Timed(GenerationResult result, double seconds, double cpuSeconds) {}

    private static final Path TASKS = Path.of("/proc/self/task");

    /**
     * The CPU time of the process's threads, native ones included, in nanoseconds: on Linux the sum of each thread's
     * run time from /proc/self/task/N/schedstat (nanosecond resolution; the JDK's process CPU time counts in 10 ms
     * ticks here, a tenth of a demo request); elsewhere the JDK's figure. Threads that ended between two reads
     * drop out, so the engine's threads, which live as long as it does, are what it measures.
     */
    static long processCpuNanos() {
        if (Files.isDirectory(TASKS)) {
            long sum = 0;
            try (DirectoryStream<Path> tasks = Files.newDirectoryStream(TASKS)) {
                for (Path task : tasks) {
                    try {
                        String line = Files.readString(task.resolve("schedstat"));
                        int space = line.indexOf(' ');
                        sum += Long.parseLong(space < 0 ? line.strip() : line.substring(0, space));
                    } catch (IOException | NumberFormatException e) {
                        // the thread ended while being read: it drops out
                    }
                }
                if (sum > 0) return sum;
            } catch (IOException e) {
                // fall through to the JDK's figure
            }
        }
        return OS.getProcessCpuTime();
    }

    /** -Dspecula.bench.verbose=true: one line per request on standard error (where its time went). */
    private static final boolean VERBOSE = Boolean.getBoolean("specula.bench.verbose");

    static Timed run(SpeculaEngine engine, GenerationRequest request) {
        long[] first = new long[2]; // wall clock and CPU time when the first text arrived
        long cpu0 = processCpuNanos(), t0 = System.nanoTime();
        GenerationResult r = engine.generate(request, text -> {
            if (first[0] == 0) {
                first[1] = processCpuNanos();
                first[0] = System.nanoTime();
            }
        }, () -> false);
        long t1 = System.nanoTime(), cpu1 = processCpuNanos();
        double wall = (t1 - t0) / 1e9, cpu = (cpu1 - cpu0) / 1e9;
        double decoding = Math.max(0, wall - r.stats().promptSeconds());
        double sinceFirst = (t1 - first[0]) / 1e9;
        double decodingCpu = first[0] != 0 && sinceFirst > 0
                ? (cpu1 - first[1]) / 1e9 * decoding / sinceFirst // the decoding's CPU rate over its wall time
                : wall > 0 ? cpu * decoding / wall : 0;           // no text came: the prompt's share by the wall clock
        if (VERBOSE)
            System.err.printf(java.util.Locale.ROOT, "%s: %d tokens, call %.2f ms, prompt %.2f ms, steps %.2f ms%s, decoding CPU %.2f ms%n",
                    request.drafter().cliName(), r.tokens().length, 1e3 * wall, 1e3 * r.stats().promptSeconds(),
                    1e3 * r.stats().generateSeconds(), r.speculation() == null ? "" : String.format(java.util.Locale.ROOT,
                            " (drafting %.2f, forward+verify+commit %.2f, accept+learn %.2f; %d steps)", 1e3 * r.speculation().draftSeconds(),
                            1e3 * r.speculation().verifySeconds(), 1e3 * r.speculation().otherSeconds(), r.speculation().steps()),
                    1e3 * decodingCpu);
        return new Timed(r, decoding, decodingCpu);
    }
}
