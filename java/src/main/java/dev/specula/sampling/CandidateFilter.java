package dev.specula.sampling;

import java.util.List;

/**
 * A constraint on the next token, applied before a token is chosen: it sets the logits of the tokens it
 * disallows to {@code -Infinity}. Plain decoding masks the row it samples from; the speculative engine masks
 * the target's row at every node of the draft tree with that node's own context before verifying, so a
 * drafted token that the filter disallows has probability 0 and is never accepted. Greedy and sampling
 * verification therefore stay lossless with respect to the <em>filtered</em> distribution: speculative output
 * equals plain output under the same filters.
 *
 * <p>Contract: {@link #mask} must be a deterministic function of {@code context[0..length)} (the same
 * context gives the same mask, whichever path computes it), must only lower entries to {@code -Infinity}
 * (never raise or otherwise change them), must leave at least one token allowed, and must not keep the
 * arrays it is given (the engine reuses them). Filters run on the host; rows come back from the device for
 * them, which costs a copy per tree node.
 */
@FunctionalInterface
public interface CandidateFilter {
    /**
     * Masks the disallowed candidates for the position after {@code context[0..length)}.
     *
     * @param context   the tokens so far: prompt, output and, in a draft tree, the path from the root down
     *                  to the node being predicted from; entries at and beyond {@code length} are unspecified
     * @param length    how many tokens of context are valid; the candidate would be {@code context[length]}
     * @param logitsRow the target's logits for that position, one per vocabulary entry, masked in place
     */
    void mask(int[] context, int length, float[] logitsRow);

    /** Applies every filter in order; throws if together they disallow every token. */
    public static void applyAll(List<CandidateFilter> filters, int[] context, int length, float[] logitsRow) {
        if (filters.isEmpty()) return;
        for (CandidateFilter f : filters) f.mask(context, length, logitsRow);
        for (float v : logitsRow) if (v != Float.NEGATIVE_INFINITY) return;
        throw new IllegalStateException("the candidate filters disallow every token after " + length + " tokens of context");
    }
}
