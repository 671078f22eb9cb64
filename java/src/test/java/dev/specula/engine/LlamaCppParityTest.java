package dev.specula.engine;

import static org.junit.jupiter.api.Assertions.*;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.specula.model.LlamaFileType;
import dev.specula.model.ModelFile;
import dev.specula.model.NativeModels;
import dev.specula.model.TestModelMaker;
import dev.specula.model.gguf.GgmlType;
import dev.specula.nativeapi.Context;
import dev.specula.nativeapi.DType;
import dev.specula.nativeapi.DeviceBuffer;
import dev.specula.nativeapi.ForwardArgs;
import dev.specula.nativeapi.KvCache;
import dev.specula.nativeapi.NativeModel;
import dev.specula.oracle.LlamaCppOracle;
import dev.specula.sampling.SamplingOptions;
import dev.specula.tokenizer.VocabTrainer;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Path;
import java.util.SplittableRandom;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * Specula's cpu forward against llama.cpp on random-weight models: log-probabilities at every step of a
 * 32-token prompt, and 64 greedy tokens.
 *
 * <p>Bounds by weight type, in max |Δ log p| over every position and every token llama.cpp gives log p >= -20. Each is
 * at least twice the largest difference measured on the random models of seeds 7 (the default), 8 and 9
 * ({@code -Dspecula.parity.seed=N}), so that another seed's rounding does not fail it, and each is explained by where
 * llama.cpp rounds differently:
 * <ul>
 *   <li>F32: the 1e-3 (summation order only);</li>
 *   <li>F16 and BF16: llama.cpp rounds the activations to the weight's type for the dot product, Specula keeps them f32;</li>
 *   <li>Q8_0, Q4_0, Q5_0 and the k-quants: both quantize the activations the same way (Q8_0 / q8_K blocks) and sum
 *       the same integers, so a model often agrees to 2e-6; but a last-bit difference in an f32 step (a norm's
 *       summation order) can push one activation to the other side of an 8-bit rounding step, and what follows then
 *       differs by a quantization step. Such flips measured 0.003 to 0.062 and strike any of these types on some seed
 *       (Q2_K agreed to 3e-6 on seeds 7 and 8 and parted by 0.062 on seed 9), so the class is bounded as one, at 1.5e-1;</li>
 *   <li>Q4_1 and Q5_1: llama.cpp quantizes the activations to Q8_1 (with the block sum), Specula to Q8_0-style
 *       blocks of 32 (native/cpu/int8_dot.hpp): 0.069 to 0.091 on every seed, flips on top: 2e-1;</li>
 *   <li>the mixes hold Q4_1 / Q5_0 / Q5_1 fallbacks (ffn_down, rows of 640) besides the k-quants, so both kinds of
 *       difference: 2e-1, gemma3's 2.5e-1 (0.11 to 0.12 measured: its scaled embeddings and four norms per block carry
 *       the same roundings further).</li>
 * </ul>
 * Measured max |Δ log p| (llama.cpp: npm @node-llama-cpp/linux-x64 3.21.1; Specula: the cpu backend, AVX-512 VNNI) and bounds:
 * <pre>
 * arch-type-tied         seed 7   seed 8   seed 9  bound  margin over the largest measured
 * llama-F32-false       2.9e-06  3.2e-06  2.6e-06  0.001  the bound
 * llama-F32-true        3.2e-06  3.1e-06  2.8e-06  0.001  the bound
 * qwen2-F32-false       2.9e-06  3.4e-06  2.6e-06  0.001  the bound
 * qwen3-F32             2.7e-06  2.5e-06  2.6e-06  0.001  the bound
 * gemma3-F32              0.002   0.0018    0.002  0.005  2.5x
 * llama-F16-false        0.0037    0.004   0.0034  0.01   2.5x
 * qwen2-BF16-true          0.03    0.032    0.032  0.07   2.2x
 * llama-Q8_0-false        0.039    0.038  1.9e-06  0.15   2.4x the class's largest flip (0.062)
 * qwen2-Q4_0-false      1.5e-06  1.7e-06  1.9e-06  0.15   2.4x the class's largest flip (0.062)
 * llama-Q5_0-false        0.023  1.7e-06   0.0029  0.15   2.4x the class's largest flip (0.062)
 * llama-Q2_K-false      2.3e-06  2.7e-06    0.062  0.15   2.4x the class's largest flip (0.062)
 * llama-Q3_K-false       0.0038  2.2e-06  2.3e-06  0.15   2.4x the class's largest flip (0.062)
 * llama-Q4_K-false        0.035  2.3e-06    0.061  0.15   2.4x the class's largest flip (0.062)
 * qwen2-Q5_K-false      2.5e-06  3.2e-06  2.3e-06  0.15   2.4x the class's largest flip (0.062)
 * llama-Q6_K-false         0.06  1.7e-06    0.058  0.15   2.4x the class's largest flip (0.062)
 * llama-Q4_1-false        0.091     0.09    0.088  0.2    2.2x
 * qwen2-Q5_1-false        0.074    0.074    0.069  0.2    2.7x
 * llama-Q4_K_M-false      0.089    0.069    0.069  0.2    2.3x
 * qwen2-Q4_K_M-true       0.061     0.07    0.072  0.2    2.8x
 * llama-Q5_K_M-true       0.094    0.081    0.068  0.2    2.1x
 * qwen2-Q5_K_M-false      0.073     0.07    0.077  0.2    2.6x
 * llama-Q3_K_M-false      0.068    0.081    0.066  0.2    2.5x
 * qwen2-Q3_K_M-true       0.087    0.053     0.05  0.2    2.3x
 * qwen3-Q4_K_M            0.041    0.079    0.071  0.2    2.5x
 * gemma3-Q4_K_M            0.11     0.12     0.12  0.25   2.1x
 * </pre>
 * Greedy runs must be identical on F32; elsewhere they may part only at a near tie (our own log-probabilities of the
 * two choices within twice the bound; the partings measured on seeds 7 and 8 had gaps of 0.0003 to 0.039).
 */
class LlamaCppParityTest {
    /** The random models' seed (the prompt's is this + 4); -Dspecula.parity.seed=N checks the bounds on other models. */
    static final int SEED = Integer.getInteger("specula.parity.seed", 7);

    @TempDir
    static Path temp;
    static Context context;

    @BeforeAll
    static void open() {
        context = Context.cpu();
    }

    @AfterAll
    static void close() {
        context.close();
    }

    @ParameterizedTest(name = "{0} {1} tied={2}")
    @CsvSource({
        "llama, F32,  false, 1e-3",
        "llama, F32,  true,  1e-3",
        "qwen2, F32,  false, 1e-3",
        "llama, F16,  false, 1e-2",
        "qwen2, BF16, true,  7e-2",
        "llama, Q8_0, false, 1.5e-1",
        "qwen2, Q4_0, false, 1.5e-1",
    })
    void logProbabilitiesAndGreedyTokensMatchLlamaCpp(String arch, String type, boolean tied, double tolerance) {
        var oracle = LlamaCppOracle.find();
        assumeTrue(oracle.isPresent(), () -> "llama.cpp oracle unavailable: " + LlamaCppOracle.whyMissing());
        Path file = temp.resolve(arch + "-" + type + "-" + tied + ".gguf");
        int vocab = 512;
        new TestModelMaker().arch(arch).dim(128).layers(3).heads(8).kvHeads(2).ff(320).vocab(vocab).context(256)
                .type(GgmlType.valueOf(type)).tied(tied).seed(SEED)
                .tokenizer(VocabTrainer.ggufMetadata("llama", vocab, 7)).write(file);
        compareWithLlamaCpp(oracle.get(), file, vocab, tolerance, type.equals("F32"));
    }

    /**
     * The other GGML types and llama.cpp's mixes: a pure file of each single type (every matrix of it) and the
     * Q4_K_M / Q5_K_M / Q3_K_M file types typed as llama.cpp's quantizer types them, with rows of 256 (dim) and 640
     * (ff: not a multiple of 256, so ffn_down falls back to a legacy type in the k-quant mixes). Bounds and their
     * measurements: the class comment.
     */
    @ParameterizedTest(name = "{0} {1} tied={2}")
    @CsvSource({
        "llama, Q4_1,   false, 2e-1",
        "llama, Q5_0,   false, 1.5e-1",
        "qwen2, Q5_1,   false, 2e-1",
        "llama, Q2_K,   false, 1.5e-1",
        "llama, Q3_K,   false, 1.5e-1",
        "llama, Q4_K,   false, 1.5e-1",
        "qwen2, Q5_K,   false, 1.5e-1",
        "llama, Q6_K,   false, 1.5e-1",
        "llama, Q4_K_M, false, 2e-1",
        "qwen2, Q4_K_M, true,  2e-1",
        "llama, Q5_K_M, true,  2e-1",
        "qwen2, Q5_K_M, false, 2e-1",
        "llama, Q3_K_M, false, 2e-1",
        "qwen2, Q3_K_M, true,  2e-1",
    })
    void quantTypesAndLlamaCppMixesMatchLlamaCpp(String arch, String type, boolean tied, double tolerance) {
        var oracle = LlamaCppOracle.find();
        assumeTrue(oracle.isPresent(), () -> "llama.cpp oracle unavailable: " + LlamaCppOracle.whyMissing());
        Path file = temp.resolve(arch + "-" + type + "-" + tied + ".gguf");
        int vocab = 512;
        boolean single = type.matches("Q[2-6]_K|Q[45]_[01]");
        LlamaFileType.Choice choice = single ? new LlamaFileType.Choice(LlamaFileType.pureOf(GgmlType.valueOf(type)), true)
                : LlamaFileType.parse(type);
        new TestModelMaker().arch(arch).dim(256).layers(single ? 2 : 8).heads(8).kvHeads(2).ff(single ? 512 : 640).vocab(vocab).context(256)
                .fileType(choice.fileType(), choice.pure()).tied(tied).seed(SEED)
                .tokenizer(VocabTrainer.ggufMetadata("llama", vocab, 7)).write(file);
        compareWithLlamaCpp(oracle.get(), file, vocab, tolerance, false);
    }

    /**
     * qwen3 (q/k norms, a head size of 48 beside n_embd / n_head = 16) and gemma3 (scaled embeddings, q/k and
     * post-block norms, GELU-tanh, local layers with a window of 8 over the 32-token prompt and every sixth layer
     * global with its own RoPE base, tied output), F32 and a Q4_K_M mix each. On F32 the bound is the issue's
     * 1e-3 for qwen3; gemma3's GELU is computed by llama.cpp through an f16 lookup table, hence 5e-3 there. The mixes
     * as the others (qwen3's attention output, 4 heads of 48, falls back to a legacy type); measurements: the class comment.
     */
    @ParameterizedTest(name = "{0} {1}")
    @CsvSource({
        "qwen3,  F32,    1e-3",
        "qwen3,  Q4_K_M, 2e-1",
        "gemma3, F32,    5e-3",
        "gemma3, Q4_K_M, 2.5e-1",
    })
    void qwen3AndGemma3MatchLlamaCpp(String arch, String type, double tolerance) {
        var oracle = LlamaCppOracle.find();
        assumeTrue(oracle.isPresent(), () -> "llama.cpp oracle unavailable: " + LlamaCppOracle.whyMissing());
        Path file = temp.resolve(arch + "-" + type + ".gguf");
        int vocab = 512;
        boolean f32 = type.equals("F32");
        LlamaFileType.Choice choice = LlamaFileType.parse(type);
        TestModelMaker maker = new TestModelMaker().arch(arch).heads(4).kvHeads(2).vocab(vocab).context(256)
                .fileType(choice.fileType(), choice.pure()).seed(SEED).tokenizer(VocabTrainer.ggufMetadata("llama", vocab, 7));
        if (arch.equals("qwen3")) {
            maker.dim(f32 ? 64 : 256).headDim(48).layers(3).ff(f32 ? 192 : 512).tied(false);
        } else {
            maker.dim(f32 ? 128 : 256).headDim(64).layers(7).ff(f32 ? 256 : 512).tied(true).slidingWindow(8).ropeTheta(1000000f);
        }
        maker.write(file);
        compareWithLlamaCpp(oracle.get(), file, vocab, tolerance, f32);
    }

    private static void compareWithLlamaCpp(LlamaCppOracle oracle, Path file, int vocab, double tolerance, boolean exactGreedy) {

        int[] prompt = new int[32];
        SplittableRandom rng = new SplittableRandom(SEED + 4);
        prompt[0] = 1; // BOS
        for (int i = 1; i < prompt.length; i++) prompt[i] = 3 + rng.nextInt(vocab - 3);

        float[][] expected = oracle.logprobs(file, vocab, prompt);
        try (ModelFile mf = ModelFile.open(file);
             NativeModel model = NativeModels.load(context, mf, DType.F32); // the oracle runs llama.cpp with an F32 cache too
             KvCache kv = model.newKvCache(256);
             DeviceBuffer logits = context.allocate((long) prompt.length * vocab * Float.BYTES);
             Arena arena = Arena.ofConfined()) {
            model.forward(kv, ForwardArgs.chainAll(prompt, logits));
            MemorySegment host = arena.allocate(logits.size());
            logits.copyToHost(0, host, 0, logits.size());
            double worstOverall = 0;
            for (int pos = 0; pos < prompt.length; pos++) {
                float[] row = host.asSlice((long) pos * vocab * 4, (long) vocab * 4).toArray(ValueLayout.JAVA_FLOAT);
                double[] ours = logSoftmax(row);
                double worst = 0;
                for (int t = 0; t < vocab; t++) {
                    if (expected[pos][t] < -20) continue; // negligible tokens only add rounding noise
                    worst = Math.max(worst, Math.abs(ours[t] - expected[pos][t]));
                }
                assertTrue(worst <= tolerance, String.format("%s position %d: max |log p difference| %.3g > %.2g", file.getFileName(), pos, worst, tolerance));
                worstOverall = Math.max(worstOverall, worst);
            }
            System.out.printf("parity %s: max |log p - llama.cpp log p| over 32 positions = %.3g (tolerance %.2g)%n",
                    file.getFileName(), worstOverall, tolerance);

            int[] theirs = oracle.greedy(file, prompt, 64);
            {
                int[] mine = ReferenceDecoder.generate(model, kv.capacity(), prompt, theirs.length, SamplingOptions.GREEDY);
                int agree = 0;
                while (agree < Math.min(mine.length, theirs.length) && mine[agree] == theirs[agree]) agree++;
                if (exactGreedy) {
                    assertArrayEquals(theirs, mine, "greedy tokens differ from llama.cpp on " + file.getFileName());
                } else if (agree < theirs.length) {
                    // Tie-aware: where the runs part, our own log-probabilities of the two choices must be
                    // within the type's tolerance, i.e. llama.cpp's rounding could have flipped them.
                    int[] prefix = new int[prompt.length + agree];
                    System.arraycopy(prompt, 0, prefix, 0, prompt.length);
                    System.arraycopy(mine, 0, prefix, prompt.length, agree);
                    double[] lp = lastLogProbs(model, prefix, vocab);
                    double gap = lp[mine[agree]] - lp[theirs[agree]];
                    System.out.printf("parity %s: greedy parts from llama.cpp at token %d with a gap of %.3g (allowed %.2g)%n",
                            file.getFileName(), agree, gap, 2 * tolerance);
                    assertTrue(gap <= 2 * tolerance, String.format(
                            "%s: greedy parts from llama.cpp at token %d (ours %d, theirs %d) with a gap of %.3g, not a near tie",
                            file.getFileName(), agree, mine[agree], theirs[agree], gap));
                }
            }
        }
    }

    private static double[] lastLogProbs(NativeModel model, int[] tokens, int vocab) {
        try (KvCache kv = model.newKvCache(tokens.length + 1);
             DeviceBuffer logits = model.context().allocate((long) vocab * Float.BYTES);
             Arena arena = Arena.ofConfined()) {
            model.forward(kv, ForwardArgs.chainLast(tokens, logits));
            MemorySegment host = arena.allocate(logits.size());
            logits.copyToHost(0, host, 0, logits.size());
            return logSoftmax(host.toArray(ValueLayout.JAVA_FLOAT));
        }
    }

    static double[] logSoftmax(float[] logits) {
        double max = Double.NEGATIVE_INFINITY;
        for (float v : logits) max = Math.max(max, v);
        double sum = 0;
        for (float v : logits) sum += Math.exp(v - max);
        double log = Math.log(sum) + max;
        double[] out = new double[logits.length];
        for (int i = 0; i < out.length; i++) out[i] = logits[i] - log;
        return out;
    }
}
