package dev.specula;

import java.util.Arrays;
import java.util.Map;

/**
 * A snapshot of an engine's scheduler ({@link SpeculaEngine#stats()}): the batch and the queue now, totals since
 * the engine was built, and the speculative counters per drafter. Cheap to take; the counters only grow, so a
 * metrics endpoint can export them as counters.
 *
 * @param maxBatch       sequences that may generate at once (the builder's batch)
 * @param running        sequences generating now (the batch size)
 * @param queued         requests waiting for a place in the batch (the queue depth)
 * @param maxQueued      the most that may wait; beyond it requests are refused with {@link EngineBusyException}
 * @param steps          decoding steps run
 * @param stepSequences  sequences summed over all steps (stepSequences / steps: the mean batch size)
 * @param stepRows       rows run through the target (trees, and the prompt chunks of requests joining), summed over all steps
 * @param finished       requests that ended normally (EOS, max tokens, stop string, context full, cancelled)
 * @param failed         requests that failed inside the engine (each alone; the others went on)
 * @param refused        requests refused because the queue was full
 * @param speculation    per drafter name (as {@link Drafter#cliName()}, or a custom policy's name)
 */
public record EngineStats(int maxBatch, int running, int queued, int maxQueued, long steps, long stepSequences, long stepRows,
                          long finished, long failed, long refused, Map<String, Speculative> speculation) {

    public EngineStats {
        speculation = Map.copyOf(speculation);
    }

    /** The mean sequences per step so far (0 before the first step). */
    public double meanBatchSize() {
        return steps == 0 ? 0 : (double) stepSequences / steps;
    }

    /**
     * One drafter's speculative counters, as vLLM defines them (its {@code spec_decode} metrics). A draft is one
     * sequence's step with at least one drafted token (plain steps are not drafts). For a tree, the draft tokens are
     * all its nodes but the root, and the accepted tokens are those on the accepted path.
     *
     * @param drafts              steps that verified a draft
     * @param draftTokens         drafted tokens verified
     * @param acceptedTokens      drafted tokens accepted
     * @param acceptedPerPosition [i]: drafts whose token at position i (depth i + 1) was accepted
     */
    public record Speculative(long drafts, long draftTokens, long acceptedTokens, long[] acceptedPerPosition) {
        public Speculative {
            acceptedPerPosition = acceptedPerPosition.clone();
        }

        @Override
        public long[] acceptedPerPosition() {
            return acceptedPerPosition.clone();
        }

        /** Accepted draft tokens over drafted tokens (NaN before the first draft). */
        public double acceptanceRate() {
            return draftTokens == 0 ? Double.NaN : (double) acceptedTokens / draftTokens;
        }

        /** Tokens per draft step, bonus token included: 1 + accepted / drafts (NaN before the first draft). */
        public double meanAcceptanceLength() {
            return drafts == 0 ? Double.NaN : 1 + (double) acceptedTokens / drafts;
        }

        /** Of all drafts, the fraction whose token at position i (0-based) was accepted. */
        public double acceptanceAtPosition(int i) {
            return drafts == 0 ? Double.NaN : i < acceptedPerPosition.length ? (double) acceptedPerPosition[i] / drafts : 0;
        }

        @Override
        public boolean equals(Object o) {
            return o instanceof Speculative s && drafts == s.drafts && draftTokens == s.draftTokens && acceptedTokens == s.acceptedTokens
                    && Arrays.equals(acceptedPerPosition, s.acceptedPerPosition);
        }

        @Override
        public int hashCode() {
            return Long.hashCode(drafts) * 31 + Arrays.hashCode(acceptedPerPosition);
        }

        @Override
        public String toString() {
            return "Speculative[drafts=" + drafts + ", draftTokens=" + draftTokens + ", acceptedTokens=" + acceptedTokens
                    + ", acceptedPerPosition=" + Arrays.toString(acceptedPerPosition) + "]";
        }
    }
}
