package dev.specula.bench;

import dev.specula.model.LoadedModel;
import dev.specula.nativeapi.Context;
import dev.specula.nativeapi.DeviceBuffer;
import dev.specula.nativeapi.ForwardArgs;
import dev.specula.nativeapi.KvCache;
import dev.specula.nativeapi.NativeModel;
import dev.specula.nativeapi.SamplingParams;
import dev.specula.nativeapi.TreeVerifier;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;

/**
 * What continuous batching's steps cost at the forward: one sequence's one-row decode step against B sequences'
 * one-row steps in one multi-sequence forward (spec_forward_batch), each over its own prefix, and a prompt's
 * prefill alone against B prompts prefilled in one call. Both by the wall clock and by the process's CPU time
 * (every thread of the native pool), median of reps. The one-row steps are followed by the batch's greedy
 * verification (one call), as the engine's plain steps are; its cost is shown apart.
 *
 * <p>Usage: BatchStepCost MODEL.gguf [threads=2] [batch=8] [prefix=124] [reps=20]. With "--random 100m" (or
 * 100m-q8_0, 100m-q4_k_m) in place of the file, BatchThroughput's 100M random model.
 */
public final class BatchStepCost {
    public static void main(String[] args) {
        Path file = args[0].equals("--random") ? BatchThroughput.random100m(args[1]) : Path.of(args[0]);
        int a = args[0].equals("--random") ? 2 : 1; // "--random 100m"
        int threads = args.length > a ? Integer.parseInt(args[a]) : 2;
        int batch = args.length > a + 1 ? Integer.parseInt(args[a + 1]) : 8;
        int prefix = args.length > a + 2 ? Integer.parseInt(args[a + 2]) : 124;
        int reps = args.length > a + 3 ? Integer.parseInt(args[a + 3]) : 20;
        try (Context ctx = Context.cpu(); LoadedModel loaded = LoadedModel.open(ctx, file)) {
            ctx.setThreads(threads);
            NativeModel model = loaded.model();
            int vocab = model.shape().nVocab();
            SplittableRandom rng = new SplittableRandom(1);
            List<KvCache> kvs = new ArrayList<>();
            int[][] prompts = new int[batch][];
            for (int b = 0; b < batch; b++) {
                kvs.add(model.newKvCache(prefix + 64));
                prompts[b] = rng.ints(prefix, 3, vocab).toArray();
            }
            try (DeviceBuffer logits = ctx.allocate((long) batch * vocab * Float.BYTES)) {
                List<ForwardArgs> fill = new ArrayList<>();
                for (int b = 0; b < batch; b++) fill.add(new ForwardArgs(prompts[b], null, null, ForwardArgs.LogitsMode.NONE, null, 0, null, null, false, 0));
                double[] prefillOne = time(reps / 4 + 1, () -> model.forward(kvs.get(0), fill.get(0)));
                double[] prefillBatch = time(reps / 4 + 1, () -> model.forwardBatch(kvs, fill));
                // the same rows as one sequence's prompt: what the rows cost apart from being several sequences
                int[] joined = new int[batch * prefix];
                for (int b = 0; b < batch; b++) System.arraycopy(prompts[b], 0, joined, b * prefix, prefix);
                ForwardArgs longPrompt = new ForwardArgs(joined, null, null, ForwardArgs.LogitsMode.NONE, null, 0, null, null, false, 0);
                double[] prefillLong;
                try (KvCache longKv = model.newKvCache(batch * prefix + 1)) {
                    prefillLong = time(reps / 4 + 1, () -> model.forward(longKv, longPrompt));
                }
                model.forwardBatch(kvs, fill);
                for (KvCache kv : kvs) kv.commitChain(prefix);
                List<ForwardArgs> step = new ArrayList<>();
                int[][] tokens = new int[batch][], parents = new int[batch][];
                SamplingParams[] greedy = new SamplingParams[batch];
                for (int b = 0; b < batch; b++) {
                    tokens[b] = new int[] {rng.nextInt(3, vocab)};
                    parents[b] = new int[] {-1};
                    greedy[b] = new SamplingParams(1, 0f, 1f, 0);
                    step.add(ForwardArgs.tree(tokens[b], parents[b], logits, (long) b * vocab * Float.BYTES));
                }
                double[] one = time(reps, () -> model.forward(kvs.get(0), step.get(0)));
                double[] many = time(reps, () -> model.forwardBatch(kvs, step));
                double[] verifyOne = time(reps, () -> TreeVerifier.verify(ctx, 1, vocab, new int[][] {tokens[0]}, new int[][] {parents[0]},
                        new SamplingParams[] {greedy[0]}, logits, null, 0));
                double[] verifyMany = time(reps, () -> TreeVerifier.verify(ctx, 1, vocab, tokens, parents, greedy, logits, null, 0));
                System.out.printf(Locale.ROOT, "model %s, threads %d, batch %d, prefix %d, median of %d (prefill: of %d)%n",
                        file.getFileName(), threads, batch, prefix, reps, reps / 4 + 1);
                System.out.println("| call | wall ms | CPU ms | wall, relative | CPU, relative |");
                System.out.println("|---|---|---|---|---|");
                row("decode step, 1 sequence x 1 row", one, one);
                row("decode step, " + batch + " sequences x 1 row", many, one);
                row("greedy verify, 1 sequence", verifyOne, verifyOne);
                row("greedy verify, " + batch + " sequences", verifyMany, verifyOne);
                row("prefill, 1 x " + prefix + " rows", prefillOne, prefillOne);
                row("prefill, " + batch + " x " + prefix + " rows, one call", prefillBatch, prefillOne);
                row("prefill, 1 x " + batch * prefix + " rows", prefillLong, prefillOne);
            }
            for (KvCache kv : kvs) kv.close();
        }
    }

    private static final java.lang.invoke.MethodHandle CLOCK_GETTIME = java.lang.foreign.Linker.nativeLinker().downcallHandle(
            java.lang.foreign.Linker.nativeLinker().defaultLookup().find("clock_gettime").orElseThrow(),
            java.lang.foreign.FunctionDescriptor.of(java.lang.foreign.ValueLayout.JAVA_INT, java.lang.foreign.ValueLayout.JAVA_INT,
                    java.lang.foreign.ValueLayout.ADDRESS));
    private static final java.lang.foreign.MemorySegment TIMESPEC = java.lang.foreign.Arena.global().allocate(16, 8);

    /**
     * The process's CPU time in nanoseconds, all threads (CLOCK_PROCESS_CPUTIME_ID): the JDK's getProcessCpuTime
     * counts in 10 ms ticks here, too coarse for one step.
     */
    static long processCpuNanos() {
        try {
            int rc = (int) CLOCK_GETTIME.invokeExact(2, TIMESPEC);
            if (rc != 0) throw new IllegalStateException("clock_gettime failed");
        } catch (Throwable t) {
            throw new IllegalStateException(t);
        }
        return TIMESPEC.get(java.lang.foreign.ValueLayout.JAVA_LONG, 0) * 1_000_000_000L + TIMESPEC.get(java.lang.foreign.ValueLayout.JAVA_LONG, 8);
    }

    private static void row(String name, double[] t, double[] base) {
        System.out.printf(Locale.ROOT, "| %s | %.3f | %.3f | %.2f | %.2f |%n", name, t[0], t[1], t[0] / base[0], t[1] / base[1]);
    }

    /** Median wall and process-CPU milliseconds of reps runs, after one untimed run. */
    private static double[] time(int reps, Runnable r) {
        r.run();
        double[] wall = new double[reps], cpu = new double[reps];
        for (int i = 0; i < reps; i++) {
            long t0 = System.nanoTime(), c0 = processCpuNanos();
            r.run();
            cpu[i] = (processCpuNanos() - c0) / 1e6;
            wall[i] = (System.nanoTime() - t0) / 1e6;
        }
        Arrays.sort(wall);
        Arrays.sort(cpu);
        return new double[] {wall[reps / 2], cpu[reps / 2]};
    }
}
