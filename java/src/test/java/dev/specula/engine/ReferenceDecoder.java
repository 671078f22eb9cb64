package dev.specula.engine;

import dev.specula.nativeapi.DeviceBuffer;
import dev.specula.nativeapi.ForwardArgs;
import dev.specula.nativeapi.KvCache;
import dev.specula.nativeapi.NativeModel;
import dev.specula.sampling.CandidateFilter;
import dev.specula.sampling.Sampler;
import dev.specula.sampling.SamplingOptions;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;
import java.util.List;

/**
 * The simplest decoder there is, kept apart from {@link DecodeLoop} so the lossless tests compare against code
 * that shares none of its logic: the whole prompt in one forward, then one forward per token, each logits row
 * read to the host, masked by the filters and sampled by {@link Sampler}. No trees, no verification, no device
 * sampling, no stop tokens.
 */
public final class ReferenceDecoder {
    private ReferenceDecoder() {}

    /** Greedy or sampled tokens after prompt, in a fresh KV cache of capacity positions. */
    public static int[] generate(NativeModel model, int capacity, int[] prompt, int maxTokens, SamplingOptions sampling) {
        return generate(model, capacity, prompt, maxTokens, sampling, List.of());
    }

    /** As above, each row masked by filters (given the tokens so far) before a token is chosen from it. */
    public static int[] generate(NativeModel model, int capacity, int[] prompt, int maxTokens, SamplingOptions sampling,
                                 List<CandidateFilter> filters) {
        int vocab = model.shape().nVocab();
        Sampler sampler = new Sampler(sampling);
        int[] history = Arrays.copyOf(prompt, prompt.length + maxTokens);
        int length = prompt.length;
        float[] row = new float[vocab];
        try (Arena arena = Arena.ofConfined(); KvCache kv = model.newKvCache(capacity);
             DeviceBuffer logits = model.context().allocate((long) vocab * Float.BYTES)) {
            MemorySegment host = arena.allocate((long) vocab * Float.BYTES, 64);
            int[] next = prompt;
            while (length < history.length) {
                model.forward(kv, ForwardArgs.chainLast(next, logits));
                kv.commitChain(next.length);
                logits.copyToHost(0, host, 0, host.byteSize());
                MemorySegment.copy(host, ValueLayout.JAVA_FLOAT, 0, row, 0, vocab);
                CandidateFilter.applyAll(filters, history, length, row);
                int token = sampler.sample(row, history, length);
                history[length++] = token;
                next = new int[] {token};
            }
        }
        return Arrays.copyOfRange(history, prompt.length, length);
    }
}
