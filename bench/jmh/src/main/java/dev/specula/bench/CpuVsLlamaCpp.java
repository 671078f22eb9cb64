package dev.specula.bench;

import dev.specula.engine.DecodeLoop;
import dev.specula.model.LlamaFileType;
import dev.specula.model.ModelFile;
import dev.specula.model.NativeModels;
import dev.specula.model.TestModelMaker;
import dev.specula.nativeapi.Context;
import dev.specula.nativeapi.DType;
import dev.specula.nativeapi.DeviceBuffer;
import dev.specula.nativeapi.ForwardArgs;
import dev.specula.nativeapi.KvCache;
import dev.specula.nativeapi.NativeModel;
import dev.specula.oracle.LlamaCppOracle;
import dev.specula.policies.NoSpeculation;
import dev.specula.sampling.SamplingOptions;
import dev.specula.tokenizer.VocabTrainer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;

/**
 * Plain CPU decoding and prompt processing, Specula against llama.cpp, on the same random-weight GGUF files
 * with the same thread count, in one run, printing the ratios. Both keep the KV cache in F16 (llama.cpp's
 * default) and decode greedily one token per forward.
 *
 * <p>Usage: CpuVsLlamaCpp [sizes=100m,1b] [types=F16,Q8_0] [threads=1,2] [promptTokens=128] [decodeTokens=32]
 * (types: llama.cpp file types such as Q4_K_M, each file typed as llama.cpp's quantizer types it)
 *
 * <p>Environment: {@code SPECULA_BENCH_CLOCK=cpu} times both engines by CPU time instead of the wall clock (on a
 * machine shared with other work, a one-thread run's CPU time is what it would take alone): llama.cpp by its
 * process's, Specula by its calling thread's at 1 thread (where the cpu backend computes on the caller; the
 * JVM's compiler and collector threads left out) and by its process's otherwise. Specula then runs the prompt
 * and the decode steps as bare forwards (no sampling).
 */
public final class CpuVsLlamaCpp {
    record Size(String name, int dim, int layers, int heads, int kvHeads, int ff, int vocab) {}

    static final List<Size> SIZES = List.of(
            new Size("100m", 768, 10, 12, 4, 2048, 32000),
            new Size("1b", 2048, 18, 32, 8, 5632, 32000));

    public static void main(String[] args) throws Exception {
        List<String> sizes = List.of(arg(args, 0, "100m,1b").split(","));
        List<String> types = List.of(arg(args, 1, "F16,Q8_0").split(","));
        List<String> threads = List.of(arg(args, 2, "1,2").split(","));
        int promptTokens = Integer.parseInt(arg(args, 3, "128"));
        int decodeTokens = Integer.parseInt(arg(args, 4, "32"));
        LlamaCppOracle oracle = LlamaCppOracle.find().orElseThrow(() -> new IllegalStateException(LlamaCppOracle.whyMissing()));
        Path dir = Path.of(System.getProperty("user.home"), ".cache", "specula", "bench");
        Files.createDirectories(dir);
        System.out.println("| model | type | threads | prompt tok/s specula | llama.cpp | ratio | decode tok/s specula | llama.cpp | ratio |");
        System.out.println("|---|---|---|---|---|---|---|---|---|");
        for (Size size : SIZES) {
            if (!sizes.contains(size.name())) continue;
            for (String type : types) {
                Path file = dir.resolve(size.name() + "-" + type + ".gguf");
                if (!Files.isRegularFile(file)) {
                    System.err.println("making " + file);
                    new TestModelMaker().arch("llama").dim(size.dim()).layers(size.layers()).heads(size.heads())
                            .kvHeads(size.kvHeads()).ff(size.ff()).vocab(size.vocab()).context(2048)
                            .fileType(LlamaFileType.parse(type).fileType(), LlamaFileType.parse(type).pure()).seed(1).tokenizer(VocabTrainer.ggufMetadata("llama", size.vocab(), 1)).write(file);
                }
                int[] prompt = new int[promptTokens];
                SplittableRandom rng = new SplittableRandom(3);
                prompt[0] = 1;
                for (int i = 1; i < prompt.length; i++) prompt[i] = 3 + rng.nextInt(size.vocab() - 3);
                for (String t : threads) {
                    int n = Integer.parseInt(t);
                    double[] ours = CPU_CLOCK ? speculaCpuTime(file, prompt, decodeTokens, n) : specula(file, prompt, decodeTokens, n);
                    LlamaCppOracle.Speed theirs = oracle.speed(file, prompt, decodeTokens, n, "F16");
                    double theirPrompt = prompt.length / theirs.promptSeconds();
                    double theirDecode = theirs.generated() / theirs.decodeSeconds();
                    System.out.printf(Locale.ROOT, "| %s | %s | %d | %.1f | %.1f | %.2f | %.2f | %.2f | %.2f |%n", size.name(), type, n,
                            ours[0], theirPrompt, ours[0] / theirPrompt, ours[1], theirDecode, ours[1] / theirDecode);
                }
            }
        }
    }

    static final boolean CPU_CLOCK = "cpu".equals(System.getenv("SPECULA_BENCH_CLOCK"));

    /** The same by process CPU time: the prompt but its last token in one forward, then one-token forwards. */
    static double[] speculaCpuTime(Path file, int[] prompt, int decodeTokens, int threads) {
        var os = (com.sun.management.OperatingSystemMXBean) java.lang.management.ManagementFactory.getOperatingSystemMXBean();
        var mx = java.lang.management.ManagementFactory.getThreadMXBean();
        java.util.function.LongSupplier clock = threads == 1 ? mx::getCurrentThreadCpuTime : os::getProcessCpuTime;
        try (Context ctx = Context.cpu(); ModelFile mf = ModelFile.open(file);
             NativeModel model = NativeModels.load(ctx, mf, DType.F16)) {
            ctx.setThreads(threads);
            try (DeviceBuffer logits = ctx.allocate((long) model.shape().nVocab() * 4)) {
                try (KvCache kv = model.newKvCache(16)) { // warm-up: page in the mapping
                    model.forward(kv, ForwardArgs.chainLast(new int[] {1, 2}, logits));
                }
                try (KvCache kv = model.newKvCache(prompt.length + decodeTokens + 8)) {
                    int[] head = Arrays.copyOf(prompt, prompt.length - 1);
                    long t0 = clock.getAsLong();
                    model.forward(kv, ForwardArgs.chainLast(head, logits));
                    kv.commitChain(head.length);
                    long t1 = clock.getAsLong();
                    int token = prompt[prompt.length - 1];
                    for (int i = 0; i < decodeTokens; i++) {
                        model.forward(kv, ForwardArgs.chainLast(new int[] {token}, logits));
                        kv.commitChain(1);
                        token = 3 + i;
                    }
                    long t2 = clock.getAsLong();
                    return new double[] {head.length / ((t1 - t0) / 1e9), decodeTokens / ((t2 - t1) / 1e9)};
                }
            }
        }
    }

    /** Prompt tokens per second and decoded tokens per second. */
    static double[] specula(Path file, int[] prompt, int decodeTokens, int threads) {
        try (Context ctx = Context.cpu(); ModelFile mf = ModelFile.open(file);
             NativeModel model = NativeModels.load(ctx, mf, DType.F16);
             DecodeLoop decoder = new DecodeLoop(model, 1, false)) { // plain decoding: trees of one node
            ctx.setThreads(threads);
            // Warm-up: page in the mapping.
            try (KvCache kv = model.newKvCache(prompt.length + decodeTokens + 8)) {
                decoder.generate(new DecodeLoop.Request(kv, new int[] {1, 2}, 2, SamplingOptions.GREEDY, new NoSpeculation(), x -> false, x -> true, () -> false));
            }
            try (KvCache kv = model.newKvCache(prompt.length + decodeTokens + 8)) {
                var r = decoder.generate(new DecodeLoop.Request(kv, prompt, decodeTokens, SamplingOptions.GREEDY, new NoSpeculation(), x -> false, x -> true, () -> false));
                // The prompt's last token is the first step's root: prompt speed counts the others, decode speed
                // every step (each forwards one token).
                double promptRate = (prompt.length - 1) / r.stats().promptSeconds();
                double decodeRate = r.stats().tokens() / r.stats().generateSeconds();
                return new double[] {promptRate, decodeRate};
            }
        }
    }

    private static String arg(String[] args, int i, String fallback) {
        return args.length > i && !args[i].isBlank() ? args[i] : fallback;
    }
}
