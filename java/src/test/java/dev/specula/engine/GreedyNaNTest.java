package dev.specula.engine;

import static org.junit.jupiter.api.Assertions.*;

import dev.specula.nativeapi.Context;
import dev.specula.nativeapi.DeviceBuffer;
import dev.specula.nativeapi.SamplingParams;
import dev.specula.nativeapi.TreeVerifier;
import dev.specula.nativeapi.VerifyResult;
import dev.specula.sampling.Sampler;
import dev.specula.sampling.SamplingOptions;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import org.junit.jupiter.api.Test;

/**
 * A greedy plain step picks its token in one of two places: a lone sequence on the host ({@link Sampler}), a batch's
 * greedy plain steps in the batch's native verification call. On rows with NaN, infinities and signed zeros both
 * must pick the same token: the ABI's order, NaN ranking as -inf, ties to the lower id.
 */
class GreedyNaNTest {
    private static final float NAN = Float.NaN, INF = Float.POSITIVE_INFINITY;

    /** Each row and the token the ABI's order gives it. */
    private static final float[][] ROWS = {
        {NAN, 1f, 2f, 2f, -1f, 0f},        // a NaN first: the host argmax once kept it (nothing compares above NaN)
        {NAN, -INF, NAN, -INF, NAN, -INF}, // NaN ties with -inf: the lowest id
        {NAN, NAN, NAN, NAN, NAN, NAN},    // only NaN: token 0
        {-INF, NAN, -INF, -5f, NAN, -7f},
        {1f, NAN, 1f, 3f, NAN, 3f},
        {-0f, 0f, NAN, -1f, NAN, -0f},     // -0 equals +0
        {NAN, NAN, -5f, NAN, -5f, -7f},
        {NAN, 2f, INF, NAN, INF, 1f},
    };
    private static final int[] EXPECTED = {2, 0, 0, 3, 3, 0, 2, 2};

    @Test
    void theHostAndTheNativeGreedyPickAgreeOnRowsWithNaN() {
        int batch = ROWS.length, vocab = ROWS[0].length;
        int[] host = new int[batch], sampled = new int[batch], penalised = new int[batch];
        for (int b = 0; b < batch; b++) {
            host[b] = Sampler.argmax(ROWS[b]);
            sampled[b] = new Sampler(SamplingOptions.GREEDY).sample(ROWS[b], new int[0], 0);
            // a greedy step with a repetition penalty takes the penalised row's argmax (doubles); no history: the same row
            penalised[b] = new Sampler(SamplingOptions.GREEDY.withRepetitionPenalty(1.5f, 8)).sample(ROWS[b], new int[0], 0);
        }
        int[] device = new int[batch];
        try (Context context = Context.open("cpu", 0); Arena arena = Arena.ofConfined()) {
            MemorySegment host2d = arena.allocate((long) batch * vocab * 4);
            for (int b = 0; b < batch; b++) MemorySegment.copy(ROWS[b], 0, host2d, ValueLayout.JAVA_FLOAT, (long) b * vocab * 4, vocab);
            DeviceBuffer logits = context.allocate(host2d.byteSize());
            logits.copyFromHost(host2d, 0, 0, host2d.byteSize());
            int[][] tokens = new int[batch][], parents = new int[batch][];
            SamplingParams[] params = new SamplingParams[batch];
            for (int b = 0; b < batch; b++) {
                tokens[b] = new int[] {0};
                parents[b] = new int[] {-1};
                params[b] = new SamplingParams(b, 0f, 1f, 0);
            }
            VerifyResult[] results = TreeVerifier.verify(context, 1, vocab, tokens, parents, params, logits, null, 1);
            for (int b = 0; b < batch; b++) device[b] = results[b].bonusToken();
        }
        assertArrayEquals(EXPECTED, device, "the native verification's greedy tokens");
        assertArrayEquals(EXPECTED, host, "Sampler.argmax");
        assertArrayEquals(EXPECTED, sampled, "a lone sequence's greedy host sample");
        assertArrayEquals(EXPECTED, penalised, "a greedy host sample with a repetition penalty");
        assertEquals(3, Sampler.argmax(new double[] {NAN, 1, -INF, 4, 4}));
        assertEquals(0, Sampler.argmax(new double[] {-INF, NAN}));
    }
}
