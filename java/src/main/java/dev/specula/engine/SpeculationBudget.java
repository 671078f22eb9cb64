package dev.specula.engine;

import java.util.Arrays;
import java.util.HashMap;
import java.util.Map;

/**
 * Chooses how many tree nodes a policy may propose each step, so that speculation never costs much more than
 * plain decoding: a cost model measured in the loop, and a credit account that pays for every speculative step.
 *
 * <h2>Cost model</h2>
 * For each allowance bucket (1, 2, 4, ... up to the largest tree) and each policy, the budget keeps the measured
 * wall seconds of a whole step (drafting, the target's forward, verification, committing and learning) and the
 * tokens such a step produced, as moving averages. Bucket 1 is plain decoding; its cost {@code c0} is the
 * yardstick, also refreshed by any step whose tree was a lone root (its drafting time left out). A bucket's rate
 * is tokens per second; a bucket is <em>profitable</em> when its rate beats plain decoding's by
 * {@value #MARGIN_PERCENT}%. The cost of a bucket never measured is predicted from the largest measured bucket
 * below it, linearly in nodes (from plain decoding alone: {@code (1 + (n - 1) / 2) c0}, drafting included; a
 * bucket's average starts no higher than this prediction).
 *
 * <p>Timings on a shared machine are noisy, and noise only ever slows a step, so the averages believe a fast
 * step in full and a slow one in part: any step counts as at most {@value #SAMPLE_CAP} times its bucket's average
 * (or prediction), plain and speculative alike. (With a looser cap for speculative steps, under a load average of
 * 20 on two cores, two-node prompt-lookup steps averaged 1.4 to 3.5 times c0 while plain steps, held to the
 * tighter cap, tracked their fast end: speculation that paid was judged to lose.) c0 starts as the
 * fastest of the first {@value #FIRST_PLAIN_STEPS} plain steps and is never above any bucket's average (a bigger
 * tree, the same root and more, cannot cost less). A bucket's first step only warms it up: it is neither averaged
 * nor charged, since what a first step costs once (code compiled and native calls linked on first use, buffers
 * grown) is not what the bucket costs; it was measured at 50 to 100 times a plain step on the demo target.
 *
 * <h2>The account</h2>
 * Each policy has a credit {@code B}, in seconds. It starts at {@code B0} = one plain step once {@code c0} is
 * known. Every speculative step adds what it won against plain decoding, {@code tokens c0 - seconds} (negative
 * when it lost); every plain step adds the allowance {@code eps seconds} (eps = {@value #ALLOWANCE_PERCENT}%);
 * B is capped at {@value #CREDIT_CAP_STEPS} plain steps, so credit won on one request cannot pay for long
 * losses on the next. The rules:
 * <ol>
 *   <li>Exploiting a profitable bucket needs {@code B >= 0}.</li>
 *   <li>Any other speculative step is a probe: an unmeasured bigger tree, a stale neighbour of the best bucket,
 *       or, while decoding plainly, the most promising bucket again. A probe needs {@code B >= expected loss}
 *       ({@code max(0, c_i - y_i c0)}, from the cost model).</li>
 *   <li>While decoding plainly, probes are spaced by a gap that doubles after each probe whose bucket is then
 *       expected to lose more than {@value #BREAK_EVEN} plain steps, from {@value #MIN_PROBE_GAP} up to
 *       {@value #MAX_PROBE_GAP} steps (a probe that about breaks even, such as prompt lookup finding nothing,
 *       costs nothing worth waiting for). The gap starts again from {@value #MIN_PROBE_GAP} when a stretch of
 *       speculation ended with more credit than it began with.</li>
 * </ol>
 *
 * <h2>Why the overhead is at most about 3%</h2>
 * Let W be the sum of {@code tokens c0 - seconds} over all speculative steps so far: the seconds speculation
 * saved against decoding the same tokens plainly (negative: lost). Let P be the seconds spent in plain steps.
 * Without the cap, B would be {@code B0 + eps P + W}; the cap only ever removes credit, so
 * {@code B <= B0 + eps P + W}. Every speculative step starts with {@code B >= 0} (rules 1 and 2), so after it
 * B is at least minus that one step's loss, L. Hence {@code W >= -(B0 + eps P + L)}: the whole run takes at most
 * the plain time of its tokens plus {@code B0 + eps P + L}, plus the uncharged first step of each bucket tried (a
 * drafter that never pays tries one bucket). Relative to plain decoding that is
 * {@code eps + (B0 + L + first steps) / T}: {@value #ALLOWANCE_PERCENT}% plus a few steps' worth spread over the
 * run's T seconds; for a few hundred tokens that is under 3%, and it tends to eps for longer runs (an engine's
 * requests share the accounts, so the few steps are paid once per engine, not per request). A drafter that never
 * pays therefore converges to plain decoding, the fixed point: its probes thin out (the gap doubles) and each is
 * paid from the small allowance. A drafter that pays keeps winning credit and speculating; its only overhead is
 * re-measuring plain decoding every {@value #PLAIN_EVERY} steps and its neighbours every
 * {@value #NEIGHBOURS_EVERY}, each chosen only when affordable.
 *
 * <p>What the bound takes as given: that c0 is what plain decoding costs now, and that the times charged are the
 * times spent (the caps above charge a step slowed by other work on the machine less than it took: such steps
 * are outside the bound, as they would have slowed plain decoding too). A policy's learning
 * ({@code observe}/{@code observeBatch}) is timed as part of the step; backed off, a policy learns on one plain
 * step in {@value #LEARN_EVERY_PLAIN} only ({@link #learnsWhilePlain}), so what its learning adds to plain
 * decoding is that fraction of its cost. Thread-safe.
 */
public final class SpeculationBudget {
    /** Weight of the past in the moving averages of costs and yields. */
    static final double DECAY = 0.8;
    static final int ALLOWANCE_PERCENT = 1;
    /** eps: credit earned per second of plain decoding, what re-probing may cost at most. */
    static final double ALLOWANCE = ALLOWANCE_PERCENT / 100.0;
    /** B0, in plain steps. */
    static final double INITIAL_CREDIT_STEPS = 1.0;
    static final int CREDIT_CAP_STEPS = 8;
    static final int MARGIN_PERCENT = 2;
    static final int MIN_PROBE_GAP = 2;
    /** A probe whose bucket is expected to lose at most this many plain steps counts as breaking even. */
    static final double BREAK_EVEN = 0.25;
    static final int MAX_PROBE_GAP = 128;
    /** While backed off: plain steps per step whose outcome the policy learns from. */
    static final int LEARN_EVERY_PLAIN = 16;
    /** While speculating: steps between plain steps that refresh c0. */
    static final int PLAIN_EVERY = 64;
    /** While speculating: steps between re-measurements of the best bucket's neighbours. */
    static final int NEIGHBOURS_EVERY = 16;

    /** What each node of a tree costs, in plain steps, before any tree was measured (drafting included). */
    static final double UNMEASURED_NODE_COST = 0.5;
    /**
     * A step slower than this times its bucket's average (or prediction) counts as this: plain and speculative
     * alike, so that both sides of every comparison see the machine's noise the same way.
     */
    static final double SAMPLE_CAP = 1.25;
    /** Plain steps whose fastest is the first c0. */
    static final int FIRST_PLAIN_STEPS = 3;

    private final int[] buckets;
    private final boolean adaptive;
    private final Map<String, Account> accounts = new HashMap<>();

    /** One policy's measurements and credit. */
    static final class Account {
        final double[] cost;    // seconds per step, per bucket (0: not measured); cost[0] is c0
        final double[] yield;   // tokens per step, per bucket
        final long[] lastTried; // the step at which each bucket was last chosen
        final long[] samples;   // steps recorded per bucket
        final double[] firstPlain = new double[FIRST_PLAIN_STEPS];
        int plainSamples;
        double credit;          // B, seconds
        long step;
        long nextProbe;
        int probeGap = MIN_PROBE_GAP;
        boolean speculating;
        boolean probing;
        double creditBeforeProbe;
        // for tests and diagnostics
        long probes;
        long speculativeSteps;
        double won; // W, seconds

        Account(int n) {
            cost = new double[n];
            yield = new double[n];
            lastTried = new long[n];
            samples = new long[n];
        }

        /**
         * c0, the yardstick: the plain steps' average, but never more than any bucket's, since a bigger tree
         * (the same root and more) should cost at least a plain step; an average a few slow plain steps inflated
         * would make every speculative step look won. Where a small tree is in fact cheaper (on the demo target a
         * two-node step verified natively measured cheaper than a plain step sampled on the host), c0 is
         * underestimated, which only understates what speculation wins.
         */
        double plainCost() {
            double c0 = cost[0];
            for (int i = 1; i < cost.length; i++) if (cost[i] != 0 && cost[i] < c0) c0 = cost[i];
            return c0;
        }
    }

    /** maxTreeNodes: the largest tree; adaptive false always allows maxTreeNodes (for comparisons). */
    public SpeculationBudget(int maxTreeNodes, boolean adaptive) {
        int n = 1;
        while ((1 << n) < maxTreeNodes) n++;
        if (maxTreeNodes <= 1) n = 0;
        buckets = new int[n + 1];
        for (int i = 0; i < n; i++) buckets[i] = 1 << i;
        buckets[n] = Math.max(1, maxTreeNodes);
        this.adaptive = adaptive;
    }

    public int maxTreeNodes() {
        return buckets[buckets.length - 1];
    }

    private Account account(String policy) {
        return accounts.computeIfAbsent(policy, k -> new Account(buckets.length));
    }

    /** Whether measured costs may shrink trees (false: always {@link #maxTreeNodes()}). */
    public boolean adaptive() {
        return adaptive;
    }

    /** The tree size a policy may use this step. */
    public synchronized int choose(String policy) {
        if (!adaptive || buckets.length == 1) return maxTreeNodes();
        Account a = account(policy);
        a.step++;
        double c0 = a.plainCost();
        if (c0 == 0) return pick(a, 0); // the yardstick first
        int best = bestProfitable(a);
        if (best > 0 && a.credit >= 0) {
            a.speculating = true;
            if (a.step - a.lastTried[0] > PLAIN_EVERY) return pick(a, 0);
            // Grow while the next size may pay and is affordable; re-measure the one below now and then.
            int up = best + 1;
            if (up < buckets.length && (a.cost[up] == 0 || a.step - a.lastTried[up] > NEIGHBOURS_EVERY)
                    && expectedLoss(a, up) <= a.credit) return pick(a, up);
            int down = best - 1;
            if (down > 0 && a.step - a.lastTried[down] > NEIGHBOURS_EVERY && expectedLoss(a, down) <= a.credit) return pick(a, down);
            return pick(a, best);
        }
        if (a.speculating) {
            // A stretch of speculation ended: probe soon again only if it paid.
            a.speculating = false;
            if (a.credit > a.creditBeforeProbe) a.probeGap = MIN_PROBE_GAP;
            a.nextProbe = a.step + a.probeGap;
        }
        if (a.step >= a.nextProbe) {
            int probe = mostPromising(a);
            if (expectedLoss(a, probe) <= a.credit) {
                a.creditBeforeProbe = a.credit;
                a.nextProbe = a.step + a.probeGap;
                a.probing = true;
                a.probes++;
                return pick(a, probe);
            }
        }
        return pick(a, 0);
    }

    /**
     * Whether a policy that was just held to plain decoding should still learn from the step
     * ({@link DraftPolicy#observeBatch}): always while it speculates, and on one plain step in
     * {@value #LEARN_EVERY_PLAIN} while backed off. Learning is part of what speculation costs (Token Recycling's
     * top-k of a whole vocabulary row per tree node, a sizeable fraction of a plain step on the demo target); backed off, the
     * policy keeps learning a little, for its next probe, at a small fraction of that cost.
     */
    public synchronized boolean learnsWhilePlain(String policy) {
        if (!adaptive || buckets.length == 1) return true;
        Account a = accounts.get(policy);
        return a == null || a.speculating || a.step % LEARN_EVERY_PLAIN == 0;
    }

    private int pick(Account a, int i) {
        a.lastTried[i] = a.step;
        return buckets[i];
    }

    /** The measured bucket of highest rate if it beats plain decoding by the margin, else 0. */
    private int bestProfitable(Account a) {
        double c0 = a.plainCost();
        int best = 0;
        double bestRate = (1 + MARGIN_PERCENT / 100.0) / c0;
        for (int i = 1; i < buckets.length; i++) {
            if (a.cost[i] == 0) continue;
            double rate = a.yield[i] / a.cost[i];
            if (rate > bestRate) {
                bestRate = rate;
                best = i;
            }
        }
        return best;
    }

    /** While decoding plainly, what to probe: the measured speculative bucket of highest rate, else the smallest. */
    private int mostPromising(Account a) {
        int best = 1;
        double bestRate = -1;
        for (int i = 1; i < buckets.length; i++) {
            if (a.cost[i] == 0) continue;
            double rate = a.yield[i] / a.cost[i];
            if (rate > bestRate) {
                bestRate = rate;
                best = i;
            }
        }
        return best;
    }

    /** Seconds a step of bucket i is expected to lose against decoding its tokens plainly (0 if it should win). */
    private double expectedLoss(Account a, int i) {
        return Math.max(0, predictedCost(a, i) - predictedYield(a, i) * a.plainCost());
    }

    /** Bucket i's average, or if unmeasured, the measured bucket below it extrapolated linearly in nodes. */
    private double predictedCost(Account a, int i) {
        if (a.cost[i] != 0) return a.cost[i];
        double c0 = a.plainCost();
        int j = measuredBelow(a, i);
        if (j == 0) return (1 + UNMEASURED_NODE_COST * (buckets[i] - 1)) * c0;
        return a.cost[j] + (a.cost[j] - c0) * (buckets[i] - buckets[j]) / (buckets[j] - 1.0);
    }

    private double predictedYield(Account a, int i) {
        if (a.cost[i] != 0) return a.yield[i];
        int j = measuredBelow(a, i);
        return j == 0 ? 1 : a.yield[j];
    }

    private static int measuredBelow(Account a, int i) {
        int j = i - 1;
        while (j > 0 && a.cost[j] == 0) j--;
        return j;
    }

    /** Records a step as allowed nodes, seconds and tokens, without knowing the tree's size or its drafting time. */
    public void record(String policy, int allowed, double seconds, int tokens) {
        record(policy, allowed, allowed, 0, seconds, tokens);
    }

    /**
     * Records a step: the size the policy was allowed, the size of the tree it proposed, the seconds of its
     * drafting and of the whole step (drafting included), and the tokens the step gave (accepted plus bonus).
     */
    public synchronized void record(String policy, int allowed, int treeNodes, double draftSeconds, double seconds, int tokens) {
        if (!adaptive || buckets.length == 1) return;
        Account a = account(policy);
        int i = bucketOf(allowed);
        if (i == 0) {
            notePlain(a, seconds);
            a.credit += ALLOWANCE * seconds;
        } else {
            if (treeNodes <= 1) notePlain(a, seconds - draftSeconds);
            a.speculativeSteps++;
            if (a.samples[i]++ == 0) return; // a bucket's first step only warms it up (see the class comment)
            if (a.cost[0] == 0) return;
            double predicted = predictedCost(a, i);
            seconds = Math.min(seconds, SAMPLE_CAP * predicted);
            if (a.cost[i] == 0) {
                a.cost[i] = Math.min(seconds, predicted); // starts no higher than predicted; slower steps raise it
                a.yield[i] = tokens;
            } else {
                a.cost[i] = DECAY * a.cost[i] + (1 - DECAY) * seconds;
                a.yield[i] = DECAY * a.yield[i] + (1 - DECAY) * tokens;
            }
            double c0 = a.plainCost();
            double win = tokens * c0 - seconds;
            a.credit += win;
            a.won += win;
            if (a.probing) {
                // Probes that lose thin out; one that about breaks even (prompt lookup finding nothing is a plain
                // step) costs nothing worth waiting for.
                a.probing = false;
                if (expectedLoss(a, i) > BREAK_EVEN * c0) a.probeGap = Math.min(2 * a.probeGap, MAX_PROBE_GAP);
            }
        }
        a.credit = Math.min(a.credit, CREDIT_CAP_STEPS * a.plainCost());
    }

    private static void notePlain(Account a, double seconds) {
        if (seconds <= 0) return;
        if (a.cost[0] == 0) {
            // The yardstick starts as the fastest of the first plain steps: the first ones are often slow (code not
            // yet compiled, pages and buffers not yet touched), and an inflated c0 would make speculation look won.
            a.firstPlain[a.plainSamples++] = seconds;
            if (a.plainSamples < a.firstPlain.length) return;
            a.cost[0] = Arrays.stream(a.firstPlain).min().orElseThrow();
            a.yield[0] = 1;
            a.credit += INITIAL_CREDIT_STEPS * a.cost[0];
            return;
        }
        // Noise only ever slows a step, so a fast sample is believed in full and a slow one only in part.
        double sample = Math.min(seconds, SAMPLE_CAP * a.cost[0]);
        a.cost[0] = DECAY * a.cost[0] + (1 - DECAY) * sample;
    }

    private int bucketOf(int nodes) {
        for (int i = 0; i < buckets.length; i++) if (nodes <= buckets[i]) return i;
        return buckets.length - 1;
    }

    /** A copy of a policy's account, for tests (null if the policy never stepped). */
    synchronized Account snapshot(String policy) {
        Account a = accounts.get(policy);
        if (a == null) return null;
        Account c = new Account(buckets.length);
        System.arraycopy(a.cost, 0, c.cost, 0, a.cost.length);
        System.arraycopy(a.yield, 0, c.yield, 0, a.yield.length);
        System.arraycopy(a.lastTried, 0, c.lastTried, 0, a.lastTried.length);
        c.credit = a.credit;
        c.step = a.step;
        c.probes = a.probes;
        c.speculativeSteps = a.speculativeSteps;
        c.won = a.won;
        c.speculating = a.speculating;
        return c;
    }
}
