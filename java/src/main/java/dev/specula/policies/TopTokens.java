package dev.specula.policies;

import dev.specula.nativeapi.LogitsSummary;

/**
 * What a drafter's next-token distribution says, in the few numbers drafting decisions use: its two most
 * likely tokens, their probabilities (softmax at temperature 1) and the distribution's entropy in nats.
 *
 * <p>Two ways to the same numbers: {@link #of(float[], int)} reads a whole logits row on the host (the
 * reference), {@link #of(LogitsSummary, int)} takes a summary the device computed (spec_logits_summarize), so
 * only a few numbers cross to the host. Both rank as verification does (by logit, ties to the lower id, NaN
 * as -inf), give a logit equal to the maximum weight 1 (so +inf logits share the mass) and NaN none, and make
 * a row of only NaN a point mass at its first id.
 */
record TopTokens(int first, double p1, int second, double p2, double entropy, int vocab) {

    /** Ids per row a device summary brings back: the two this record keeps. */
    static final int K = 2;

    /** Reads logits[0..limit): ids at and past limit (padding the target cannot verify) never become drafts. */
    static TopTokens of(float[] logits, int limit) {
        int n = Math.min(limit, logits.length);
        int first = -1, second = -1;
        for (int i = 0; i < n; i++) {
            // Strictly above: on a tie the earlier (lower) id keeps its rank.
            if (first < 0 || rank(logits[i]) > rank(logits[first])) {
                second = first;
                first = i;
            } else if (second < 0 || rank(logits[i]) > rank(logits[second])) {
                second = i;
            }
        }
        float max = logits[first];
        double sum = 0, weighted = 0;
        for (int i = 0; i < n; i++) {
            double e = weight(logits[i], max);
            if (e > 0) { // underflowed terms (-inf logits included) must not add 0 * -inf
                sum += e;
                weighted += e * z(logits[i], max);
            }
        }
        if (!(sum > 0)) return new TopTokens(first, 1, second, 0, 0, n); // only NaN
        // H = -sum p log p with p = e^z / S: H = log S - (sum e^z z) / S.
        double entropy = Math.max(0, Math.log(sum) - weighted / sum);
        double p2 = second < 0 ? 0 : weight(logits[second], max) / sum;
        return new TopTokens(first, weight(max, max) / sum, second, p2, entropy, n);
    }

    /** From a device summary of at least one id of a row whose ids below vocab counted. */
    static TopTokens of(LogitsSummary s, int vocab) {
        int second = s.k() > 1 ? s.top()[1] : -1;
        return new TopTokens(s.top()[0], s.prob()[0], second, second < 0 ? 0 : s.prob()[1], s.entropy(), vocab);
    }

    private static double rank(float x) {
        return Float.isNaN(x) ? Double.NEGATIVE_INFINITY : x;
    }

    /** e^(x - max), the unnormalized softmax weight: 1 at the maximum itself, 0 for NaN. */
    private static double weight(float x, float max) {
        if (x == max) return 1;
        if (!(x < max)) return 0;
        return Math.exp(z(x, max));
    }

    private static double z(float x, float max) {
        return x == max ? 0 : (double) x - (double) max;
    }
}
