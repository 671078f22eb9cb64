package dev.specula.sampling;

import java.util.function.IntPredicate;

/**
 * Prunes candidates with a user predicate (Repilot-style: e.g. a completion engine that says which tokens
 * can continue valid code). The predicate is asked, for every token not already masked, whether it may follow
 * the context; the tokens it refuses are masked. It is called once per vocabulary entry per position (per
 * tree node when speculating), so keep it cheap, and deterministic in its arguments.
 */
public final class PredicateFilter implements CandidateFilter {

    /** Whether {@code candidate} may follow {@code context[0..length)}; the candidate is not in the context. */
    @FunctionalInterface
    public interface Allowed {
        boolean test(int[] context, int length, int candidate);
    }

    private final Allowed allowed;

    public PredicateFilter(Allowed allowed) {
        this.allowed = allowed;
    }

    /** A context-free filter: tokens for which {@code allowed} is false are never produced. */
    public static PredicateFilter ofTokens(IntPredicate allowed) {
        return new PredicateFilter((context, length, candidate) -> allowed.test(candidate));
    }

    @Override
    public void mask(int[] context, int length, float[] logitsRow) {
        for (int t = 0; t < logitsRow.length; t++)
            if (logitsRow[t] != Float.NEGATIVE_INFINITY && !allowed.test(context, length, t)) logitsRow[t] = Float.NEGATIVE_INFINITY;
    }
}
