package dev.specula.engine;

import static org.junit.jupiter.api.Assertions.*;

import dev.specula.StopReason;
import dev.specula.model.ModelFile;
import dev.specula.model.NativeModels;
import dev.specula.nativeapi.Context;
import dev.specula.nativeapi.DType;
import dev.specula.nativeapi.DeviceBuffer;
import dev.specula.nativeapi.ForwardArgs;
import dev.specula.nativeapi.KvCache;
import dev.specula.nativeapi.NativeModel;
import dev.specula.policies.NoSpeculation;
import dev.specula.policies.PromptLookupPolicy;
import dev.specula.sampling.SamplingOptions;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.SplittableRandom;
import java.util.function.Supplier;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Plain decoding is the decode loop with lone-root trees: it equals the independent reference decoder, also with
 * repetition penalty and min-p (which only lone-root trees support), and with prompts longer than the cpu
 * backend's 512-token slice, which the loop hands over in one call.
 */
class PlainDecodingTest {
    static final int CONTEXT = 2048;
    static final int LONG_PROMPT = 1300; // well over the cpu backend's slice of 512 tokens: three slices

    @TempDir
    static Path temp;
    static Context context;
    static ModelFile file;
    static NativeModel model;

    @BeforeAll
    static void setUp() {
        Path path = temp.resolve("long.gguf");
        TinyModel.maker(2).context(CONTEXT).write(path);
        context = Context.cpu();
        file = ModelFile.open(path);
        model = NativeModels.load(context, file, DType.F32);
    }

    @AfterAll
    static void tearDown() {
        context.close();
        file.close();
    }

    static int[] loop(int[] prompt, int maxTokens, SamplingOptions sampling, Supplier<DraftPolicy> policy, int maxTreeNodes) {
        try (KvCache kv = model.newKvCache(CONTEXT); DecodeLoop loop = new DecodeLoop(model, maxTreeNodes, false)) {
            DecodeLoop.Result r = loop.generate(new DecodeLoop.Request(kv, prompt, maxTokens, sampling, policy.get(), t -> false, t -> true, () -> false));
            assertEquals(StopReason.MAX_TOKENS, r.reason());
            return r.tokens();
        }
    }

    static int[] randomPrompt(int length, long seed) {
        SplittableRandom rng = new SplittableRandom(seed);
        int[] prompt = new int[length];
        prompt[0] = 1;
        for (int i = 1; i < length; i++) prompt[i] = i > 40 && rng.nextInt(3) == 0 ? prompt[i - 37] : 3 + rng.nextInt(TinyModel.VOCAB - 3);
        return prompt;
    }

    @Test
    void repetitionPenaltyAndMinPGoThroughTheOneLoop() {
        for (int p = 0; p < 6; p++) {
            int[] prompt = randomPrompt(8 + 3 * p, 40 + p);
            for (SamplingOptions s : new SamplingOptions[] {
                    SamplingOptions.GREEDY.withRepetitionPenalty(1.4f, 16),
                    SamplingOptions.sampled(0.8f, 100 + p).withMinP(0.08f),
                    SamplingOptions.sampled(1.1f, 200 + p).withMinP(0.02f).withRepetitionPenalty(1.2f, 32)}) {
                int[] want = ReferenceDecoder.generate(model, CONTEXT, prompt, 40, s);
                assertArrayEquals(want, loop(prompt, 40, s, NoSpeculation::new, 1), "prompt " + p + " with " + s);
            }
        }
        // With trees of more than one node they are refused, not silently dropped.
        assertThrows(IllegalArgumentException.class, () -> loop(randomPrompt(8, 1), 4,
                SamplingOptions.GREEDY.withRepetitionPenalty(1.4f, 16), PromptLookupPolicy::new, 16));
    }

    @Test
    void aPromptOverTheBackendsSliceIsOneCallWithTheSameResult() {
        int[] prompt = randomPrompt(LONG_PROMPT, 7);
        int vocab = model.shape().nVocab();
        // The native slicing against slices made here: the logits after the prompt agree.
        float[] whole = lastLogits(prompt, prompt.length), pieces = lastLogits(prompt, 100);
        double worst = 0;
        for (int t = 0; t < vocab; t++) worst = Math.max(worst, Math.abs(whole[t] - pieces[t]));
        assertTrue(worst < 1e-3, "one call and calls of 100 tokens differ by " + worst);
        // The loop takes the long prompt in one prefill call, plainly and speculatively, and equals the reference.
        int[] want = ReferenceDecoder.generate(model, CONTEXT, prompt, 32, SamplingOptions.GREEDY);
        assertArrayEquals(want, loop(prompt, 32, SamplingOptions.GREEDY, NoSpeculation::new, 1));
        assertArrayEquals(want, loop(prompt, 32, SamplingOptions.GREEDY, PromptLookupPolicy::new, 16));
    }

    /** The logits after prompt, forwarded in calls of at most piece tokens. */
    static float[] lastLogits(int[] prompt, int piece) {
        int vocab = model.shape().nVocab();
        try (KvCache kv = model.newKvCache(CONTEXT); DeviceBuffer logits = context.allocate((long) vocab * Float.BYTES);
             Arena arena = Arena.ofConfined()) {
            for (int start = 0; start < prompt.length; start += piece) {
                int[] part = Arrays.copyOfRange(prompt, start, Math.min(prompt.length, start + piece));
                model.forward(kv, ForwardArgs.chainLast(part, logits));
                kv.commitChain(part.length);
            }
            MemorySegment host = arena.allocate((long) vocab * Float.BYTES);
            logits.copyToHost(0, host, 0, host.byteSize());
            return host.toArray(ValueLayout.JAVA_FLOAT);
        }
    }
}
