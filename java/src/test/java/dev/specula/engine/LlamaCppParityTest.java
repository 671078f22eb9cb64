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
 * <p>Tolerances by weight type, because llama.cpp rounds activations to the weight's dot type (f16 for F16,
 * bf16 for BF16, Q8_0 blocks for Q8_0/Q4_0) while Specula keeps them in f32: F32 1e-3 (the bound),
 * F16 5e-2, BF16 1e-1, Q8_0 and Q4_0 3e-1 in max |Δ log p| over the most likely tokens. Greedy runs must be
 * identical on F32; elsewhere they may part only at a near tie.
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
        "llama, F16,  false, 5e-2",
        "qwen2, BF16, true,  1e-1",
        "llama, Q8_0, false, 3e-1",
        "qwen2, Q4_0, false, 3e-1",
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
     * Q4_K_M / Q5_K_M / Q3_K_M / Q2_K / Q6_K / legacy file types typed as llama.cpp's quantizer types them, with
     * rows of 256 (dim) and 640 (ff: not a multiple of 256, so ffn_down falls back to a legacy type in the k-quant
     * mixes). llama.cpp quantizes the activations of these dot products to 8 bits (Q8_K / Q8_1). Specula's cpu
     * backend does the same for the k-quants (llama.cpp's q8_K exactly, native/cpu/kquant_dot.hpp), so the pure
     * k-quant files are bounded at 1e-1: measured 2e-6 (Q2_K, Q5_K: the same integer sums as llama.cpp), 0.004
     * (Q3_K), 0.035 (Q4_K) and 0.06 (Q6_K; llama.cpp runs repacked kernels for these two); 0.03 to 0.15 before,
     * with f32 activations. The legacy types Q4_1 / Q5_0 / Q5_1 take the int8 path too (activations in
     * Q8_0-style blocks of 32, native/cpu/int8_dot.hpp; llama.cpp uses Q8_1 for the two with a min): 3e-1 as for
     * Q8_0 / Q4_0, measured 0.091, 0.023 and 0.074. The mixes contain them (ffn_down falls back to one): 3e-1,
     * measured 0.06 to 0.094 (Q4_K_M 0.089 llama, 0.061 qwen2 tied; Q5_K_M 0.094 llama tied, 0.073 qwen2; Q3_K_M 0.068
     * llama, 0.087 qwen2 tied).
     */
    @ParameterizedTest(name = "{0} {1} tied={2}")
    @CsvSource({
        "llama, Q4_1,   false, 3e-1",
        "llama, Q5_0,   false, 3e-1",
        "qwen2, Q5_1,   false, 3e-1",
        "llama, Q2_K,   false, 1e-1",
        "llama, Q3_K,   false, 1e-1",
        "llama, Q4_K,   false, 1e-1",
        "qwen2, Q5_K,   false, 1e-1",
        "llama, Q6_K,   false, 1e-1",
        "llama, Q4_K_M, false, 3e-1",
        "qwen2, Q4_K_M, true,  3e-1",
        "llama, Q5_K_M, true,  3e-1",
        "qwen2, Q5_K_M, false, 3e-1",
        "llama, Q3_K_M, false, 3e-1",
        "qwen2, Q3_K_M, true,  3e-1",
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
     * 1e-3 for qwen3 (measured 2.7e-6); gemma3's GELU is computed by llama.cpp through an f16 lookup table, hence 5e-3 there (measured 2.0e-3).
     */
    @ParameterizedTest(name = "{0} {1}")
    @CsvSource({
        "qwen3,  F32,    1e-3",
        "qwen3,  Q4_K_M, 3e-1",
        "gemma3, F32,    5e-3",
        "gemma3, Q4_K_M, 3e-1",
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
                assertTrue(worst <= tolerance, String.format("%s position %d: max |log p difference| %.3g > %.1g", file.getFileName(), pos, worst, tolerance));
                worstOverall = Math.max(worstOverall, worst);
            }
            System.out.printf("parity %s: max |log p - llama.cpp log p| over 32 positions = %.3g (tolerance %.1g)%n",
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
