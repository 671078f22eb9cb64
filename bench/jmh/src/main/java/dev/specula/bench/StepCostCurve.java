package dev.specula.bench;

import dev.specula.model.ModelFile;
import dev.specula.model.NativeModels;
import dev.specula.nativeapi.Context;
import dev.specula.nativeapi.DType;
import dev.specula.nativeapi.DeviceBuffer;
import dev.specula.nativeapi.ForwardArgs;
import dev.specula.nativeapi.KvCache;
import dev.specula.nativeapi.NativeModel;
import dev.specula.oracle.LlamaCppOracle;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Locale;
import java.util.SplittableRandom;

/**
 * The cost of one verify step with a tree of T tokens relative to a one-token step, T = 1..128, over a
 * committed prefix: speculation pays only where this stays near 1 (a memory-bound forward).
 *
 * <p>Usage: StepCostCurve MODEL.gguf [threads=0] [prefix=128] [reps=5]
 *
 * <p>Next to it, where the llama.cpp oracle is installed (tools/oracle/install.sh), llama.cpp on the same file and
 * thread count: after the same prefix, the same T tokens appended as one batch with logits at each, then erased.
 *
 * <p>System properties: {@code specula.bench.clock=cpu} (or the environment's {@code SPECULA_BENCH_CLOCK=cpu}, which
 * llama.cpp's side also reads) times each step by CPU time instead of the wall clock: the calling thread's at one
 * thread (where the cpu backend computes), the process's otherwise (on a machine shared with other work a
 * one-thread step's CPU time is what it would cost alone); {@code specula.bench.maxTokens=N} stops after the
 * sizes up to N; {@code specula.bench.stat=best} reports the best of reps instead of the median;
 * {@code specula.bench.llamacpp=false} leaves llama.cpp out.
 */
public final class StepCostCurve {
    public static void main(String[] args) {
        Path file = Path.of(args[0]);
        int threads = args.length > 1 ? Integer.parseInt(args[1]) : 0;
        int prefix = args.length > 2 ? Integer.parseInt(args[2]) : 128;
        int reps = args.length > 3 ? Integer.parseInt(args[3]) : 5;
        int maxTokens = Integer.getInteger("specula.bench.maxTokens", 128);
        int[] sizes = Arrays.stream(new int[] {1, 2, 4, 8, 16, 32, 64, 96, 128}).filter(t -> t <= maxTokens).toArray();
        boolean envCpuClock = "cpu".equals(System.getenv("SPECULA_BENCH_CLOCK"));
        boolean cpuClock = envCpuClock || "cpu".equals(System.getProperty("specula.bench.clock"));
        boolean best = "best".equals(System.getProperty("specula.bench.stat"));
        var os = (com.sun.management.OperatingSystemMXBean) java.lang.management.ManagementFactory.getOperatingSystemMXBean();
        var threadBean = java.lang.management.ManagementFactory.getThreadMXBean();
        java.util.function.LongSupplier clock = !cpuClock ? System::nanoTime
                : threads == 1 ? threadBean::getCurrentThreadCpuTime : os::getProcessCpuTime;
        LlamaCppOracle oracle = Boolean.parseBoolean(System.getProperty("specula.bench.llamacpp", "true"))
                ? LlamaCppOracle.find().orElse(null) : null;
        if (oracle == null && Boolean.parseBoolean(System.getProperty("specula.bench.llamacpp", "true")))
            System.err.println("llama.cpp left out: " + LlamaCppOracle.whyMissing());
        if (oracle != null && cpuClock && !envCpuClock)
            System.err.println("note: llama.cpp times by the wall clock (set SPECULA_BENCH_CLOCK=cpu for both)");
        double[] specMs = new double[sizes.length];
        int[][] steps = new int[sizes.length][];
        int[] p;
        try (Context ctx = Context.cpu(); ModelFile mf = ModelFile.open(file);
             NativeModel model = NativeModels.load(ctx, mf, DType.F16);
             KvCache kv = model.newKvCache(prefix + 130)) {
            ctx.setThreads(threads);
            int vocab = model.shape().nVocab();
            SplittableRandom rng = new SplittableRandom(1);
            p = rng.ints(prefix, 3, vocab).toArray();
            p[0] = 1;
            try (DeviceBuffer logits = ctx.allocate((long) 128 * vocab * 4)) {
                model.forward(kv, ForwardArgs.chainLast(p, logits));
                kv.commitChain(prefix);
                for (int si = 0; si < sizes.length; si++) {
                    int t = sizes[si];
                    int[] tokens = rng.ints(t, 3, vocab).toArray();
                    steps[si] = tokens;
                    int[] parents = new int[t];
                    for (int i = 0; i < t; i++) parents[i] = i == 0 ? -1 : rng.nextInt(i); // a random tree
                    double[] ms = new double[reps];
                    model.forward(kv, ForwardArgs.tree(tokens, parents, logits)); // warm-up
                    for (int r = 0; r < reps; r++) {
                        long t0 = clock.getAsLong();
                        model.forward(kv, ForwardArgs.tree(tokens, parents, logits));
                        ms[r] = (clock.getAsLong() - t0) / 1e6;
                    }
                    specMs[si] = stat(ms, best);
                }
            }
        }
        double[] llamaMs = null;
        if (oracle != null) {
            double[][] theirs = oracle.stepCost(file, p, steps, reps, threads == 0 ? Runtime.getRuntime().availableProcessors() : threads, "F16");
            llamaMs = new double[sizes.length];
            for (int si = 0; si < sizes.length; si++) llamaMs[si] = stat(theirs[si], best);
        }
        System.out.printf("model %s, prefix %d, threads %s, %s of %d%s%n", file.getFileName(), prefix, threads == 0 ? "all" : threads,
                best ? "best" : "median", reps, !cpuClock ? "" : threads == 1 ? ", CPU time of the calling thread" : ", process CPU time");
        if (llamaMs == null) {
            System.out.println("| tree tokens | ms per step | relative to 1 token |");
            System.out.println("|---|---|---|");
        } else {
            System.out.printf("| tree tokens | ms per step | relative to 1 token | llama.cpp ms%s | llama.cpp relative |%n",
                    cpuClock && envCpuClock ? " (process CPU time)" : "");
            System.out.println("|---|---|---|---|---|");
        }
        for (int si = 0; si < sizes.length; si++) {
            if (llamaMs == null) System.out.printf(Locale.ROOT, "| %d | %.2f | %.2f |%n", sizes[si], specMs[si], specMs[si] / specMs[0]);
            else System.out.printf(Locale.ROOT, "| %d | %.2f | %.2f | %.2f | %.2f |%n", sizes[si], specMs[si], specMs[si] / specMs[0],
                    llamaMs[si], llamaMs[si] / llamaMs[0]);
        }
    }

    private static double stat(double[] ms, boolean best) {
        double[] sorted = ms.clone();
        Arrays.sort(sorted);
        return best ? sorted[0] : sorted[sorted.length / 2];
    }
}
