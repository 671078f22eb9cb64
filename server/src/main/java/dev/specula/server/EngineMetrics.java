package dev.specula.server;

import java.util.Map;

/**
 * What {@code /metrics} asks of the engine beyond each request's own result: the batch, the queue and, where the
 * engine counts them itself, the speculative counters. Kept behind this interface so the figures can come
 * from the engine ({@link #of}) or from a test.
 */
public interface EngineMetrics {
    /** Sequences generating now (the running batch). */
    int batchSize();

    /** Requests waiting for a place in the batch. */
    int queueDepth();

    /**
     * The engine's speculative counters per drafter name, since it started; null when the engine does not count
     * them, and the server then sums them from each finished request's statistics (which cannot tell the number
     * of draft tokens proposed: {@link SpeculativeCounters#draftTokens()} is then unknown).
     */
    default Map<String, SpeculativeCounters> speculative() {
        return null;
    }

    /**
     * vLLM's speculative-decoding counters ({@code vllm:spec_decode_*}).
     *
     * @param drafts              verify steps of speculative requests (each sequence's step counts once)
     * @param draftTokens         draft tokens proposed (tree nodes besides the root); -1 when unknown
     * @param acceptedTokens      draft tokens accepted (the bonus token not counted)
     * @param acceptedPerPosition accepted tokens per draft position, 0-based (position 0: the first draft token)
     */
    record SpeculativeCounters(long drafts, long draftTokens, long acceptedTokens, long[] acceptedPerPosition) {
        public SpeculativeCounters {
            acceptedPerPosition = acceptedPerPosition.clone();
        }

        @Override
        public long[] acceptedPerPosition() {
            return acceptedPerPosition.clone();
        }
    }

    /**
     * One consistent reading of these figures, taken once per scrape so that the batch, the queue and the
     * counters come from the same moment (default: this object itself).
     */
    default EngineMetrics snapshot() {
        return this;
    }

    /**
     * The engine's own scheduler statistics ({@link dev.specula.SpeculaEngine#stats()}): its batch, queue and
     * counters; {@link #snapshot()} reads them once.
     */
    static EngineMetrics of(dev.specula.SpeculaEngine engine) {
        return new EngineMetrics() {
            @Override
            public EngineMetrics snapshot() {
                return of(engine.stats());
            }

            @Override
            public int batchSize() {
                return snapshot().batchSize();
            }

            @Override
            public int queueDepth() {
                return snapshot().queueDepth();
            }

            @Override
            public Map<String, SpeculativeCounters> speculative() {
                return snapshot().speculative();
            }
        };
    }

    /** The figures of one reading of the engine's statistics. */
    static EngineMetrics of(dev.specula.EngineStats stats) {
        Map<String, SpeculativeCounters> spec = new java.util.TreeMap<>();
        stats.speculation().forEach((name, c) ->
                spec.put(name, new SpeculativeCounters(c.drafts(), c.draftTokens(), c.acceptedTokens(), c.acceptedPerPosition())));
        return new EngineMetrics() {
            @Override
            public int batchSize() {
                return stats.running();
            }

            @Override
            public int queueDepth() {
                return stats.queued();
            }

            @Override
            public Map<String, SpeculativeCounters> speculative() {
                return spec;
            }
        };
    }
}
