package dev.specula.engine;

import dev.specula.nativeapi.Context;
import dev.specula.nativeapi.DeviceBuffer;
import dev.specula.nativeapi.ForwardArgs;
import dev.specula.nativeapi.KvCache;
import dev.specula.nativeapi.NativeModel;
import dev.specula.nativeapi.SamplingParams;
import dev.specula.nativeapi.TreeVerifier;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;
import java.util.List;
import java.util.function.BooleanSupplier;
import java.util.function.IntPredicate;

/**
 * Plain (non-speculative) decoding at the token level: one forward per token. The baseline every
 * speculative policy must equal token for token (greedy) and beat in speed.
 *
 * <p>Off the cpu backend each token is chosen on the device (a verification of a one-node tree, whose bonus
 * token is the sampled next token), so only token ids cross to the host; on cpu, and for what the device cannot
 * express (repetition penalty, min-p, filters), the logits row comes to the host and {@link Sampler} chooses.
 */
public final class PlainDecoder implements AutoCloseable {
    /** Prompts are fed in chunks so the forward's scratch stays bounded. */
    static final int PROMPT_CHUNK = 512;

    private final NativeModel model;
    private final DeviceBuffer logits;
    private final Arena arena = Arena.ofConfined();
    private final MemorySegment hostLogits;
    private final float[] row;
    private final boolean deviceSampling;

    /**
     * Whether plain steps on context choose tokens on its device unless told otherwise: off the cpu backend, or
     * when {@link Context#DEVICE_PATHS_PROPERTY} forces the device paths (see {@link Context#devicePathsByDefault}).
     */
    public static boolean deviceSamplingByDefault(Context context) {
        return context.devicePathsByDefault();
    }

    public PlainDecoder(NativeModel model) {
        this(model, deviceSamplingByDefault(model.context()));
    }

    /** deviceSampling: choose tokens on the device where the sampling options allow it (see the class comment). */
    public PlainDecoder(NativeModel model, boolean deviceSampling) {
        this.model = model;
        this.deviceSampling = deviceSampling;
        int vocab = model.shape().nVocab();
        this.logits = model.context().allocate(SpeculativeEngine.logitsBytes(1, 1, vocab));
        this.hostLogits = arena.allocate((long) vocab * Float.BYTES, 64);
        this.row = new float[vocab];
    }

    public record Result(int[] tokens, StopReason reason, GenerationStats stats) {}

    /**
     * Generates after prompt (which must be non-empty and include BOS where the model wants one) into kv,
     * which must be empty. isStop marks end-of-generation tokens; they are not emitted.
     */
    public Result generate(KvCache kv, int[] prompt, int maxTokens, SamplingOptions sampling, IntPredicate isStop,
                           TokenSink sink, BooleanSupplier cancelled) {
        return generate(kv, prompt, maxTokens, sampling, isStop, sink, cancelled, List.of());
    }

    /** As above, with each row masked by filters (given the tokens so far) before a token is chosen from it. */
    public Result generate(KvCache kv, int[] prompt, int maxTokens, SamplingOptions sampling, IntPredicate isStop,
                           TokenSink sink, BooleanSupplier cancelled, List<CandidateFilter> filters) {
        if (prompt.length == 0) throw new IllegalArgumentException("the prompt has no tokens");
        if (maxTokens < 0) throw new IllegalArgumentException("maxTokens must be >= 0, got " + maxTokens);
        if (prompt.length >= kv.capacity())
            throw new IllegalArgumentException("the prompt's " + prompt.length + " tokens do not fit a context of " + kv.capacity());
        Sampler sampler = new Sampler(sampling);
        boolean onDevice = deviceSampling && filters.isEmpty() && sampling.deviceExpressible();
        SamplingParams[] params = {new SamplingParams(sampling.seed(), sampling.temperature(), sampling.topP(), sampling.topK())};
        int[][] root = {{prompt[prompt.length - 1]}}, rootParent = {{-1}};
        long step = 0;
        int[] history = Arrays.copyOf(prompt, prompt.length + maxTokens);
        int length = prompt.length;

        long t0 = System.nanoTime();
        for (int start = 0; start < prompt.length; start += PROMPT_CHUNK) {
            int[] chunk = Arrays.copyOfRange(prompt, start, Math.min(prompt.length, start + PROMPT_CHUNK));
            model.forward(kv, ForwardArgs.chainLast(chunk, logits));
            kv.commitChain(chunk.length);
        }
        long t1 = System.nanoTime();

        StopReason reason = StopReason.MAX_TOKENS;
        int generated = 0;
        while (generated < maxTokens) {
            if (cancelled.getAsBoolean()) {
                reason = StopReason.CANCELLED;
                break;
            }
            int token;
            if (onDevice) {
                token = TreeVerifier.verify(model.context(), 1, model.shape().nVocab(), root, rootParent, params, logits, null, step++)[0].bonusToken();
            } else {
                float[] row = readLogits();
                CandidateFilter.applyAll(filters, history, length, row);
                token = sampler.sample(row, history, length);
            }
            if (isStop.test(token)) {
                reason = StopReason.END_OF_SEQUENCE;
                break;
            }
            history[length++] = token;
            generated++;
            if (!sink.accept(token)) {
                reason = StopReason.STOP_STRING;
                break;
            }
            if (generated == maxTokens) break;
            if (kv.length() >= kv.capacity()) {
                reason = StopReason.CONTEXT_FULL;
                break;
            }
            root[0][0] = token;
            model.forward(kv, ForwardArgs.chainLast(new int[] {token}, logits));
            kv.commitChain(1);
        }
        long t2 = System.nanoTime();
        GenerationStats stats = new GenerationStats(prompt.length, generated, (t1 - t0) / 1e9, (t2 - t1) / 1e9);
        return new Result(Arrays.copyOfRange(history, prompt.length, length), reason, stats);
    }

    private float[] readLogits() {
        logits.copyToHost(0, hostLogits, 0, hostLogits.byteSize());
        MemorySegment.copy(hostLogits, ValueLayout.JAVA_FLOAT, 0, row, 0, row.length);
        return row;
    }

    @Override
    public void close() {
        logits.close();
        arena.close();
    }
}
