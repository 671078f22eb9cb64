package dev.specula.bench;

import dev.specula.model.ModelFile;
import dev.specula.model.NativeModels;
import dev.specula.nativeapi.Context;
import dev.specula.nativeapi.DType;
import dev.specula.nativeapi.DeviceBuffer;
import dev.specula.nativeapi.ForwardArgs;
import dev.specula.nativeapi.KvCache;
import dev.specula.nativeapi.NativeModel;
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
 * <p>System properties: {@code specula.bench.clock=cpu} times each step by the process's CPU time
 * instead of the wall clock (on a machine shared with other work a one-thread step's CPU time
 * is what it would cost alone); {@code specula.bench.maxTokens=N} stops after the sizes up to N.
 */
public final class StepCostCurve {
    public static void main(String[] args) {
        Path file = Path.of(args[0]);
        int threads = args.length > 1 ? Integer.parseInt(args[1]) : 0;
        int prefix = args.length > 2 ? Integer.parseInt(args[2]) : 128;
        int reps = args.length > 3 ? Integer.parseInt(args[3]) : 5;
        int maxTokens = Integer.getInteger("specula.bench.maxTokens", 128);
        int[] sizes = Arrays.stream(new int[] {1, 2, 4, 8, 16, 32, 64, 96, 128}).filter(t -> t <= maxTokens).toArray();
        boolean cpuClock = "cpu".equals(System.getProperty("specula.bench.clock"));
        var os = (com.sun.management.OperatingSystemMXBean) java.lang.management.ManagementFactory.getOperatingSystemMXBean();
        java.util.function.LongSupplier clock = cpuClock ? os::getProcessCpuTime : System::nanoTime;
        try (Context ctx = Context.cpu(); ModelFile mf = ModelFile.open(file);
             NativeModel model = NativeModels.load(ctx, mf, DType.F16);
             KvCache kv = model.newKvCache(prefix + 130)) {
            ctx.setThreads(threads);
            int vocab = model.shape().nVocab();
            SplittableRandom rng = new SplittableRandom(1);
            int[] p = rng.ints(prefix, 3, vocab).toArray();
            p[0] = 1;
            try (DeviceBuffer logits = ctx.allocate((long) 128 * vocab * 4)) {
                model.forward(kv, ForwardArgs.chainLast(p, logits));
                kv.commitChain(prefix);
                double base = 0;
                System.out.printf("model %s, prefix %d, threads %s, median of %d%s%n", file.getFileName(), prefix, threads == 0 ? "all" : threads, reps,
                        cpuClock ? ", process CPU time" : "");
                System.out.println("| tree tokens | ms per step | relative to 1 token |");
                System.out.println("|---|---|---|");
                for (int t : sizes) {
                    int[] tokens = rng.ints(t, 3, vocab).toArray();
                    int[] parents = new int[t];
                    for (int i = 0; i < t; i++) parents[i] = i == 0 ? -1 : rng.nextInt(i); // a random tree
                    double[] ms = new double[reps];
                    model.forward(kv, ForwardArgs.tree(tokens, parents, logits)); // warm-up
                    for (int r = 0; r < reps; r++) {
                        long t0 = clock.getAsLong();
                        model.forward(kv, ForwardArgs.tree(tokens, parents, logits));
                        ms[r] = (clock.getAsLong() - t0) / 1e6;
                    }
                    Arrays.sort(ms);
                    double med = ms[reps / 2];
                    if (t == 1) base = med;
                    System.out.printf(Locale.ROOT, "| %d | %.2f | %.2f |%n", t, med, med / base);
                }
            }
        }
    }
}
