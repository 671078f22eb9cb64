package dev.specula.nativeapi;

import static dev.specula.ffi.SpeculaFfi.*;

import dev.specula.ffi.spec_sampling_params;
import dev.specula.ffi.spec_verify_args;
import dev.specula.ffi.spec_verify_result;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * Batched tree verification (spec_verify): B draft trees against the target's logits at every node, on the
 * context's device; only the small results come back. Node 0 of every tree is its root.
 */
public final class TreeVerifier {
    /** Most nodes in one tree, root included. */
    public static final int MAX_TREE_NODES = SPEC_MAX_TREE_NODES();

    private TreeVerifier() {}

    /**
     * @param maxTreeNodes row stride of logits (and draftProbs): rows per sequence
     * @param tokens       per sequence, its tree's tokens
     * @param parents      per sequence, its tree's parents ([0] = -1)
     * @param params       per sequence, how its target distribution is shaped
     * @param logits       f32 [B][maxTreeNodes][nVocab]
     * @param draftProbs   null (deterministic drafters), or f32 [B][maxTreeNodes][nVocab]
     * @param step         a counter that changes every step (names the random streams)
     */
    public static VerifyResult[] verify(Context context, int maxTreeNodes, int nVocab, int[][] tokens, int[][] parents,
                                        SamplingParams[] params, DeviceBuffer logits, DeviceBuffer draftProbs, long step) {
        int batch = tokens.length;
        if (parents.length != batch || params.length != batch)
            throw new IllegalArgumentException("tokens, parents and params must have one entry per sequence");
        MemorySegment ctx = context.handle();
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment nNodes = arena.allocate(ValueLayout.JAVA_INT, batch);
            MemorySegment tok = arena.allocate(ValueLayout.JAVA_INT, (long) batch * maxTreeNodes);
            MemorySegment par = arena.allocate(ValueLayout.JAVA_INT, (long) batch * maxTreeNodes);
            MemorySegment prm = spec_sampling_params.allocateArray(batch, arena);
            for (int b = 0; b < batch; b++) {
                if (tokens[b].length != parents[b].length || tokens[b].length > maxTreeNodes)
                    throw new IllegalArgumentException("sequence " + b + ": " + tokens[b].length + " tokens, "
                            + parents[b].length + " parents, at most " + maxTreeNodes + " nodes");
                nNodes.setAtIndex(ValueLayout.JAVA_INT, b, tokens[b].length);
                MemorySegment.copy(tokens[b], 0, tok, ValueLayout.JAVA_INT, (long) b * maxTreeNodes * 4, tokens[b].length);
                MemorySegment.copy(parents[b], 0, par, ValueLayout.JAVA_INT, (long) b * maxTreeNodes * 4, parents[b].length);
                MemorySegment p = spec_sampling_params.asSlice(prm, b);
                spec_sampling_params.seed(p, params[b].seed());
                spec_sampling_params.temperature(p, params[b].temperature());
                spec_sampling_params.top_p(p, params[b].topP());
                spec_sampling_params.top_k(p, params[b].topK());
            }
            MemorySegment results = spec_verify_result.allocateArray(batch, arena);
            MemorySegment a = spec_verify_args.allocate(arena);
            spec_verify_args.batch(a, batch);
            spec_verify_args.max_tree_nodes(a, maxTreeNodes);
            spec_verify_args.n_vocab(a, nVocab);
            spec_verify_args.n_nodes(a, nNodes);
            spec_verify_args.tokens(a, tok);
            spec_verify_args.parents(a, par);
            spec_verify_args.params(a, prm);
            spec_verify_args.logits(a, owned(context, logits));
            spec_verify_args.draft_probs(a, draftProbs == null ? MemorySegment.NULL : owned(context, draftProbs));
            spec_verify_args.step(a, step);
            spec_verify_args.results(a, results);
            Native.check(spec_verify(ctx, a), ctx);
            VerifyResult[] out = new VerifyResult[batch];
            for (int b = 0; b < batch; b++) {
                MemorySegment r = spec_verify_result.asSlice(results, b);
                int n = spec_verify_result.n_accepted(r);
                int[] path = spec_verify_result.path(r).asSlice(0, (long) (n + 1) * 4).toArray(ValueLayout.JAVA_INT);
                int[] flags = spec_verify_result.depth_flags(r).asSlice(0, (long) tokens[b].length * 4).toArray(ValueLayout.JAVA_INT);
                out[b] = new VerifyResult(n, spec_verify_result.last_node(r), spec_verify_result.bonus_token(r), path, flags);
            }
            return out;
        }
    }

    static MemorySegment owned(Context context, DeviceBuffer buffer) {
        if (buffer.context() != context) throw new IllegalStateException(buffer.kind() + " belongs to another context");
        return buffer.handle();
    }
}
