package dev.specula.engine;

import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * Chooses how many tree nodes a policy may propose, from measured costs rather than a fixed rule: for each
 * size bucket (1, 2, 4, ... nodes) it keeps the measured seconds of a verify step and, per policy, the tokens
 * such a step produced, and picks the bucket with the most tokens per second. Plain decoding and the best
 * bucket's neighbours are measured again every so often, so the choice follows changes (a policy warming up, a
 * busier machine). Size 1 is plain decoding: when nothing beats it, speculation switches off. Thread-safe.
 */
public final class SpeculationBudget {
    private static final double DECAY = 0.8;
    private static final int EXPLORE_EVERY = 16;

    private final int[] buckets;
    // Per policy and bucket: seconds per verify step, and tokens per step.
    private final Map<String, double[]> cost = new ConcurrentHashMap<>();
    private final Map<String, double[]> yield = new ConcurrentHashMap<>();
    private final Map<String, int[]> sinceTried = new ConcurrentHashMap<>();
    private final boolean adaptive;

    /** maxTreeNodes: the largest tree; adaptive false always allows maxTreeNodes (for comparisons). */
    public SpeculationBudget(int maxTreeNodes, boolean adaptive) {
        int n = 1;
        while ((1 << n) < maxTreeNodes) n++;
        buckets = new int[n + 1];
        for (int i = 0; i < n; i++) buckets[i] = 1 << i;
        buckets[n] = maxTreeNodes;
        this.adaptive = adaptive;
    }

    public int maxTreeNodes() {
        return buckets[buckets.length - 1];
    }

    /** Whether measured costs may shrink trees (false: always {@link #maxTreeNodes()}). */
    public boolean adaptive() {
        return adaptive;
    }

    /** The tree size a policy may use this step. */
    public synchronized int choose(String policy) {
        if (!adaptive) return maxTreeNodes();
        double[] y = yield.computeIfAbsent(policy, k -> new double[buckets.length]);
        double[] cost = this.cost.computeIfAbsent(policy, k -> new double[buckets.length]);
        int[] since = sinceTried.computeIfAbsent(policy, k -> new int[buckets.length]);
        for (int i = 0; i < buckets.length; i++) since[i]++;
        // Untried buckets first, smallest to largest, so both sides of every ratio get measured.
        for (int i = 0; i < buckets.length; i++) if (cost[i] == 0 || y[i] == 0) return pick(i, since);
        int best = 0;
        double bestRate = 0;
        for (int i = 0; i < buckets.length; i++) {
            double rate = y[i] / cost[i];
            if (rate > bestRate) {
                bestRate = rate;
                best = i;
            }
        }
        // Now and then re-measure the best bucket's neighbours and plain decoding: costs and acceptance drift
        // (a JIT warming up, a busier machine), and a stale figure for plain decoding, the yardstick, would keep
        // speculation on or off for good. Far larger trees are not re-tried: one such step costs many.
        for (int j : new int[] {0, best + 1, best - 1}) {
            if (j >= 0 && j < buckets.length && j != best && since[j] > EXPLORE_EVERY) return pick(j, since);
        }
        return pick(best, since);
    }

    private int pick(int i, int[] since) {
        since[i] = 0;
        return buckets[i];
    }

    /** Records a step: the size the policy was allowed, the seconds its verification took, the tokens it gave. */
    public synchronized void record(String policy, int allowed, double seconds, int tokens) {
        int i = bucketOf(allowed);
        double[] cost = this.cost.computeIfAbsent(policy, k -> new double[buckets.length]);
        cost[i] = cost[i] == 0 ? seconds : DECAY * cost[i] + (1 - DECAY) * seconds;
        double[] y = yield.computeIfAbsent(policy, k -> new double[buckets.length]);
        y[i] = y[i] == 0 ? tokens : DECAY * y[i] + (1 - DECAY) * tokens;
    }

    private int bucketOf(int nodes) {
        for (int i = 0; i < buckets.length; i++) if (nodes <= buckets[i]) return i;
        return buckets.length - 1;
    }
}
