package dev.specula.engine;

import java.util.Arrays;
import java.util.HashMap;
import java.util.Map;

/**
 * Chooses how many tree nodes a policy may propose each step, so that speculation never costs much more than
 * plain decoding: a model of what each tree size gives and costs, and a credit account that pays for every
 * speculative step.
 *
 * <h2>The model</h2>
 * The allowance is chosen among buckets of 1, 2, 3, 4, 6, 8, 12, 16, ... nodes up to the largest tree (small sizes
 * densely: on a compute-bound target only chains of one to three drafts may pay). For each policy the budget
 * keeps:
 * <ul>
 *   <li><b>What a size gives</b>, from acceptance alone (no timing): how often the j-th draft token was accepted
 *       when there was room for it, over about the last {@value #ACCEPTANCE_MEMORY} speculative steps of any size.
 *       A step allowed n nodes is expected to give {@code Y(n) = 1 + S(1) + ... + S(n - 1)} tokens, S(j) the
 *       chance that the first j drafts are accepted. A policy that proposes nothing has its drafts counted as
 *       rejected, so Y includes how often it proposes. Depths never tried take the acceptance of the depth above
 *       (and the first depth {@value #PRIOR_ACCEPTANCE_PERCENT}%), each estimate holding {@value #PRIOR_WEIGHT}
 *       prior step: one accepted chain makes longer chains look worth a try, one rejection makes them look poor.
 *       Pooling the sizes is what lets a drafter whose drafts pay in bursts (prompt lookup, once the text starts
 *       repeating) jump to the size that pays, rather than prove every size in turn.</li>
 *   <li><b>What a tree costs</b>, per bucket of the tree's actual nodes: a whole step's wall seconds (drafting,
 *       the target's forward, verification, committing and learning), the lower median of its last
 *       {@value #COST_SAMPLES} steps. Noise on a shared machine only ever slows a step, so a median of the fast
 *       end is what a size costs. A step slower than {@value #OUTLIER} times what its size was expected to cost is
 *       not measured (code compiled or linked on first use, measured at 50 to 100 plain steps on the demo target,
 *       or a preemption), unless {@value #OUTLIERS_IN_A_ROW} such steps came in a row before it: then the
 *       expectation was wrong. Plain decoding's cost {@code c0} is the same median over plain steps (and over
 *       speculative steps whose tree was a lone root), the policy's own drafting and learning left out, counted
 *       from the {@value #FIRST_PLAIN_STEPS}rd plain step on, but never more than any tree's (a bigger tree, the
 *       same root and more, cannot cost less). An unmeasured size's cost is interpolated linearly in nodes between
 *       its measured neighbours, or extrapolated from the largest measured one below it (from plain decoding alone:
 *       {@code (1 + (n - 1) / 2) c0}, drafting included). The policy's first {@value #WARM_UP_TREES} trees are
 *       not measured: they run its code for the first time, 2-3 times slower but under the outlier bar, and one
 *       such step must not keep a size from being tried again.</li>
 *   <li><b>How often the policy proposes a tree</b> at all, over the same recent steps: a step allowed n nodes
 *       is expected to cost {@code C(n) = c0 + f (cost of an n-node tree - c0)}, f that fraction.</li>
 * </ul>
 * The best size is the one of most expected tokens per expected second, {@code Y(n) / C(n)}, among the measured
 * sizes and the next size up from each (sizes are explored one at a time); it is <em>profitable</em> when that
 * beats plain decoding's rate by {@value #MARGIN_PERCENT}% plus {@value #NOISE_ERRORS} standard errors of the two
 * cost estimates (each from its samples' interquartile range; at most {@value #NOISE_MARGIN_CAP} of plain decoding's
 * rate): a drafter near break-even, such as a draft model whose token costs a third of a target step, is not let
 * speculate on a gain within what its step times scatter by.
 *
 * <h2>The account</h2>
 * Each policy has a credit {@code B}, in seconds. It starts at {@code B0} = one plain step once {@code c0} is
 * known. Every speculative step adds what it won against plain decoding, {@code tokens c0 - seconds} (negative
 * when it lost; seconds at most {@value #SAMPLE_CAP} times what its tree was expected to cost before the step, or
 * times the slow end (upper quartile) of its size's recent steps where that is more: steps that are often slow are
 * what the size costs,
 * but at least the step's drafting time, except for the policy's first {@value #WARM_UP_TREES} trees (first use);
 * a probe must also afford the drafting a policy was last seen to add per step since its previous tree, a draft
 * cache catching up);
 * every plain step adds the allowance
 * {@code eps seconds} (eps = {@value #ALLOWANCE_PERCENT}%) less what the policy spent on it, asked for a tree it
 * may not draft and learning from it (a backed-off
 * policy learns only when its credit covers that, see {@link #learnsWhilePlain}); B is capped at
 * {@value #CREDIT_CAP_STEPS} plain steps, so credit won on one request cannot pay for long losses on the next.
 * When c0 falls by more than {@code 1 - }{@value #YARDSTICK_FELL} of itself while it rests on its first few
 * samples, the wins credited against the old c0 were overstated by an unknown amount, and B starts over from at
 * most B0. The rules:
 * <ol>
 *   <li>Speculating at the best size while it is profitable needs {@code B >= 0}. Now and then (every
 *       {@value #NEIGHBOURS_EVERY} steps) the next bigger size is tried instead, if {@code B} covers its expected
 *       loss ({@code max(0, C - Y c0)}), so that sizes whose cost changed are seen again; every
 *       {@value #PLAIN_EVERY} steps a plain step refreshes c0 (every {@value #PLAIN_EVERY_WHILE_FEW} while c0
 *       rests on fewer than {@value #COST_SAMPLES} plain steps: the first ones often ran cold code, and a c0 they
 *       inflate makes losing steps look won).</li>
 *   <li>While not profitable, the policy decodes plainly but for probes: a step at the best size, which needs
 *       {@code B >= expected loss}. Probes are spaced by a gap that doubles after each probe that leaves the best
 *       size expected to lose more than {@value #BREAK_EVEN} plain steps (once the probed size was measured
 *       {@value #MEASURED_STEPS} times: one slow first step must not space out the probes that would measure it
 *       again), from {@value #MIN_PROBE_GAP} up to
 *       {@value #MAX_PROBE_GAP} steps (a probe that about breaks even, such as prompt lookup finding nothing,
 *       costs nothing worth waiting for). The gap starts again from {@value #MIN_PROBE_GAP} when a stretch of
 *       speculation ends with more credit than it began with.</li>
 *   <li>Between probes a policy held plain <em>sleeps</em> ({@link Decision#attends} false): it is not asked for a
 *       tree nor shown the step's outcome, and a request that starts while it sleeps does not run EAGLE's layer over
 *       the prompt, so its steps are plain decoding's, with nothing of its upkeep (a draft model's cache is still
 *       filled with the prompt: skipped, a probe would catch it up over the whole history instead). Measured on the demo target, EAGLE held plain but awake cost 1-2.5% of each plain step (copying the
 *       step's features) and about 1.5 ms a request (its layer's cache): more than the allowance, so the credit
 *       never recovered and the drafter stayed below plain decoding for good. A policy that drafts from what it
 *       observed ({@link DraftPolicy#observedStepsBeforeDrafting}) is woken that many steps before a probe, and the
 *       probe must afford those steps at its recent upkeep per plain step it attended.</li>
 * </ol>
 *
 * <h2>Why the overhead is at most about 3%</h2>
 * Let W be the sum of {@code tokens c0 - seconds} over all speculative steps so far: the seconds speculation
 * saved against decoding the same tokens plainly (negative: lost). Let P be the seconds spent in plain steps.
 * Without the cap, B would be {@code B0 + eps P + W}; the cap only ever removes credit, so
 * {@code B <= B0 + eps P + W}. Every speculative step starts with {@code B >= 0} (rules 1 and 2), so after it
 * B is at least minus that one step's loss, L. Hence {@code W >= -(B0 + eps P + L)}: the whole run takes at most
 * the plain time of its tokens plus {@code B0 + eps P + L}.
 * Relative to plain decoding that is {@code eps + (B0 + L) / T}: {@value #ALLOWANCE_PERCENT}% plus a
 * few steps' worth spread over the run's T seconds; for a few hundred tokens that is under 3%, and it tends to eps
 * for longer runs (an engine's requests share the accounts, so the few steps are paid once per engine, not per
 * request). A drafter that never pays therefore converges to plain decoding, the fixed point: its measured
 * acceptance falls, its probes thin out (the gap doubles) and each is paid from the small allowance. A drafter
 * that pays keeps winning credit and speculating.
 *
 * <p>What the bound takes as given: that c0 is what plain decoding costs now, and that the times charged are the
 * times spent (the cap above charges a step slowed by other work on the machine, or by code used for the first
 * time, less than it took: such steps are outside the bound, as they would have slowed plain decoding too, or
 * are paid once per process). A policy's learning
 * ({@code observe}/{@code observeBatch}) is timed as part of the step and charged to the account, on plain steps
 * too; backed off, a policy learns on one plain step in {@value #LEARN_EVERY_PLAIN} at most, and only when its
 * credit pays for it ({@link #learnsWhilePlain}), so its learning stays within the bound. Thread-safe.
 */
public final class SpeculationBudget {
    static final int ALLOWANCE_PERCENT = 1;
    /** eps: credit earned per second of plain decoding, what re-probing may cost at most. */
    static final double ALLOWANCE = ALLOWANCE_PERCENT / 100.0;
    /** B0, in plain steps. */
    static final double INITIAL_CREDIT_STEPS = 1.0;
    static final int CREDIT_CAP_STEPS = 8;
    static final int MARGIN_PERCENT = 2;
    /**
     * Standard errors of the measured costs a size's expected gain must exceed, on top of the margin: a drafter near
     * break-even (a draft model whose tokens cost a third of a target step) must not speculate on a gain within what
     * its step times scatter by.
     */
    static final double NOISE_ERRORS = 2;
    /**
     * The most the scatter adds to the margin: on a machine so busy that the wall clock tells little (plain steps
     * spreading from 1 to 5 times their quiet cost), a drafter measured to win more than this still speculates.
     */
    static final double NOISE_MARGIN_CAP = 0.25;
    /** Samples a cost's scatter is measured over before it counts (with fewer, the plain steps' scatter stands in). */
    static final int SCATTER_SAMPLES = 3;
    static final int MIN_PROBE_GAP = 2;
    /** A probe whose best size is then expected to lose at most this many plain steps counts as breaking even. */
    static final double BREAK_EVEN = 0.25;
    static final int MAX_PROBE_GAP = 128;
    /** While backed off: plain steps per step whose outcome the policy learns from. */
    static final int LEARN_EVERY_PLAIN = 16;
    /** Per plain step, what a plain step's learning cost is remembered at (see learnsWhilePlain). */
    static final double LEARN_COST_DECAY = 0.99;
    /** While speculating: steps between plain steps that refresh c0. */
    static final int PLAIN_EVERY = 64;
    /**
     * ...and while c0 rests on fewer than {@link #COST_SAMPLES} plain steps: its first samples are often slow (code
     * still cold), and a c0 they inflate makes every speculative step look won.
     */
    static final int PLAIN_EVERY_WHILE_FEW = 8;
    /** Per plain step a policy attends, what its upkeep estimate remembers of the older ones. */
    static final double UPKEEP_DECAY = 0.9;
    /** While speculating: steps between tries of the next bigger size. */
    static final int NEIGHBOURS_EVERY = 16;

    /** What each node of a tree costs, in plain steps, before any tree was measured (drafting included). */
    static final double UNMEASURED_NODE_COST = 0.5;
    /** A step is charged at most this times its tree's expected cost: the rest is taken as the machine's noise. */
    static final double SAMPLE_CAP = 1.25;
    /** Steps per size whose lower median is its cost. */
    static final int COST_SAMPLES = 7;
    /** A step slower than this times its expected cost is not taken as what its size costs... */
    static final double OUTLIER = 3;
    /** ...unless this many such steps came in a row: then the expectation was wrong. */
    static final int OUTLIERS_IN_A_ROW = 3;
    /** A policy's first trees, whose drafting may take long for code compiled and linked on first use. */
    static final int WARM_UP_TREES = 3;
    /** Steps of a size measured before its cost can space out the probes. */
    static final int MEASURED_STEPS = 3;
    /** About how many recent speculative steps the acceptance estimates remember. */
    static final int ACCEPTANCE_MEMORY = 10;
    private static final double ACCEPTANCE_DECAY = 1 - 1.0 / ACCEPTANCE_MEMORY;
    static final int PRIOR_ACCEPTANCE_PERCENT = 50;
    /** Weight, in steps, of each acceptance estimate's prior. */
    static final int PRIOR_WEIGHT = 1;
    /** c0 falling below this fraction of its last value, while it rests on few samples, resets the credit to B0. */
    static final double YARDSTICK_FELL = 0.9;
    /** Plain steps measured before c0 counts (the first are often slow: code not yet compiled, pages not touched). */
    static final int FIRST_PLAIN_STEPS = 3;

    /**
     * With {@code -Dspecula.budget.trace=true} every budget prints, when the process ends, what each policy's steps
     * cost against what the budget believed and charged (a diagnostic for the back-off's decisions; off by default).
     */
    static final boolean TRACE = Boolean.getBoolean("specula.budget.trace") || "steps".equals(System.getProperty("specula.budget.trace"));
    /** ...and with {@code -Dspecula.budget.trace=steps} also a line per speculative step. */
    static final boolean TRACE_STEPS = "steps".equals(System.getProperty("specula.budget.trace"));
    static final String[] TRACE_KINDS = {"plain", "best", "bigger", "probe", "yardstick", "waking"};
    static final String[] TRACE_FIELDS = {"steps", "seconds", "charged", "policy s", "tokens", "tokens*c0", "believed s", "believed tokens"};
    private static final int PLAIN = 0, BEST = 1, BIGGER = 2, PROBE = 3, YARDSTICK = 4, WAKING = 5;

    private final int[] buckets;
    private final boolean adaptive;
    private final Map<String, Account> accounts = new HashMap<>();

    /** The most recent steps' seconds; their lower median is the estimate (noise only ever slows a step). */
    static final class Costs {
        private final double[] recent = new double[COST_SAMPLES];
        private int size;
        private int next;
        int outliersInARow;

        private double estimate;
        private double scatter;
        private double upperQuartile;

        void add(double seconds) {
            recent[next] = seconds;
            next = (next + 1) % recent.length;
            size = Math.min(size + 1, recent.length);
            double[] sorted = Arrays.copyOf(recent, size);
            Arrays.sort(sorted);
            estimate = sorted[(size - 1) / 2];
            // the interquartile range over 1.35 is a standard deviation that a lone preempted step does not inflate
            upperQuartile = sorted[size * 3 / 4];
            scatter = (upperQuartile - sorted[size / 4]) / 1.35;
        }

        /** The slow end of the usual steps (0 while fewer than {@value #SCATTER_SAMPLES} were measured). */
        double upperQuartile() {
            return size < SCATTER_SAMPLES ? 0 : upperQuartile;
        }

        /**
         * The relative standard error of the estimate: the samples' scatter (robust, from their quartiles) over the
         * estimate and the root of their number; -1 while fewer than {@value #SCATTER_SAMPLES} were measured.
         */
        double relativeError() {
            return size < SCATTER_SAMPLES || estimate <= 0 ? -1 : scatter / estimate / Math.sqrt(size);
        }

        int size() {
            return size;
        }

        /** 0 while nothing was measured. */
        double estimate() {
            return estimate;
        }

        Costs copy() {
            Costs c = new Costs();
            System.arraycopy(recent, 0, c.recent, 0, recent.length);
            c.size = size;
            c.next = next;
            c.estimate = estimate;
            c.scatter = scatter;
            c.upperQuartile = upperQuartile;
            return c;
        }
    }

    /** One policy's measurements and credit. */
    static final class Account {
        final Costs[] costs;    // per bucket of a tree's nodes; costs[0] is plain decoding's
        double proposing = 1;   // how often a speculative step proposed more than its root, recent steps weighing most
        final double[] tried;   // per draft depth j (1-based): steps with room for it and its parents accepted
        final double[] accepted; // per draft depth j: steps that accepted it
        double credit;          // B, seconds
        long step;
        long lastPlain;
        long lastNeighbour;
        long nextProbe;
        int probeGap = MIN_PROBE_GAP;
        long trees;             // speculative steps that proposed more than a root
        double learnCost;       // seconds a plain step's learning recently took (a slowly decaying maximum)
        double catchUpPerStep;  // seconds of drafting a probe adds per step since the last tree (a draft cache catching up)
        long lastTreeStep;
        long probeAt = -1;      // the step of a probe the policy was woken for (-1: none)
        boolean attends = true; // whether the policy takes part in the step last chosen
        double upkeep;          // seconds a plain step the policy attends costs it (asked for a tree, observing), recent steps weighing most
        boolean speculating;
        boolean probing;
        double creditAtStretchStart;
        // for tests and diagnostics
        long probes;
        long speculativeSteps;
        double won; // W, seconds
        int lastKind;  // what choose last decided, for the trace: one of TRACE_KINDS
        final double[][] trace = new double[TRACE_KINDS.length][TRACE_FIELDS.length];

        Account(int buckets, int maxNodes) {
            costs = new Costs[buckets];
            for (int i = 0; i < buckets; i++) costs[i] = new Costs();
            tried = new double[Math.max(1, maxNodes)];
            accepted = new double[Math.max(1, maxNodes)];
        }

        /** Bucket i's measured cost in seconds (0: not measured); bucket 0 is {@link #plainCost()}. */
        double cost(int i) {
            return i == 0 ? plainCost() : costs[i].estimate();
        }

        /**
         * c0, the yardstick: the plain steps' median, but never more than any bucket's, since a bigger tree (the
         * same root and more) should cost at least a plain step; a c0 that slow plain steps inflated would make
         * every speculative step look won. Where a small tree is in fact cheaper (on the demo target a two-node
         * step verified natively measured cheaper than a plain step sampled on the host), c0 is underestimated,
         * which only understates what speculation wins.
         */
        double plainCost() {
            if (costs[0].size() < FIRST_PLAIN_STEPS) return 0;
            double c0 = costs[0].estimate();
            for (int i = 1; i < costs.length; i++) {
                double c = costs[i].estimate();
                if (c != 0 && c < c0) c0 = c;
            }
            return c0;
        }

        /** Expected tokens of a step allowed n nodes: 1 + S(1) + ... + S(n - 1). */
        double expectedTokens(int n) {
            double tokens = 1, survive = 1, prior = PRIOR_ACCEPTANCE_PERCENT / 100.0;
            for (int j = 1; j < n && j < tried.length; j++) {
                double p = (accepted[j] + PRIOR_WEIGHT * prior) / (tried[j] + PRIOR_WEIGHT);
                survive *= p;
                tokens += survive;
                prior = p;
            }
            return tokens;
        }

        /** Learns from a step allowed n nodes whose tree had the given nodes and accepted k drafts. */
        void learnAcceptance(int n, int nodes, int k) {
            proposing = ACCEPTANCE_DECAY * proposing + (1 - ACCEPTANCE_DECAY) * (nodes > 1 ? 1 : 0);
            for (int j = 1; j < tried.length; j++) {
                tried[j] *= ACCEPTANCE_DECAY;
                accepted[j] *= ACCEPTANCE_DECAY;
            }
            for (int j = 1; j < n && j <= k + 1 && j < tried.length; j++) {
                tried[j]++;
                if (j <= k) accepted[j]++;
            }
        }
    }

    /** maxTreeNodes: the largest tree; adaptive false always allows maxTreeNodes (for comparisons). */
    public SpeculationBudget(int maxTreeNodes, boolean adaptive) {
        int max = Math.max(1, maxTreeNodes);
        // 1, 2, 3, 4, 6, 8, 12, 16, ...: dense where trees are small, then half-octaves, then the largest tree.
        int[] sizes = new int[64];
        int n = 0;
        for (int size = 1, octave = 4; size < max; ) {
            sizes[n++] = size;
            if (size < 4) size++;
            else if (size == octave) size = octave * 3 / 2;
            else size = octave *= 2;
        }
        sizes[n++] = max;
        buckets = Arrays.copyOf(sizes, n);
        this.adaptive = adaptive;
        if (TRACE && adaptive) Runtime.getRuntime().addShutdownHook(new Thread(() -> System.err.print(trace())));
    }

    /** The trace's table: per policy and kind of step, totals of what the steps cost and what was believed. */
    synchronized String trace() {
        StringBuilder out = new StringBuilder();
        for (var e : accounts.entrySet()) {
            Account a = e.getValue();
            out.append(String.format("budget trace %s (max %d nodes): c0 %.3f ms, credit %.3f ms, won %.3f ms, probes %d, probe gap %d, sizes measured:",
                    e.getKey(), maxTreeNodes(), 1e3 * a.plainCost(), 1e3 * a.credit, 1e3 * a.won, a.probes, a.probeGap));
            for (int i = 1; i < buckets.length; i++)
                if (a.costs[i].size() > 0) out.append(String.format(" %d:%.3fms(n%d)", buckets[i], 1e3 * a.cost(i), a.costs[i].size()));
            out.append('\n');
            for (int k = 0; k < TRACE_KINDS.length; k++) {
                double[] t = a.trace[k];
                if (t[0] == 0) continue;
                out.append(String.format("  %-9s steps %6.0f  ms/step %.3f  charged %.3f  policy %.3f  tokens/step %.2f  plain-equivalent ms/step %.3f  believed ms %.3f tokens %.2f%n",
                        TRACE_KINDS[k], t[0], 1e3 * t[1] / t[0], 1e3 * t[2] / t[0], 1e3 * t[3] / t[0], t[4] / t[0], 1e3 * t[5] / t[0], 1e3 * t[6] / t[0], t[7] / t[0]));
            }
        }
        return out.toString();
    }

    private static void trace(Account a, double seconds, double charged, double policySeconds, int tokens) {
        if (!TRACE) return;
        double[] t = a.trace[a.lastKind];
        t[0]++;
        t[1] += seconds;
        t[2] += charged;
        t[3] += policySeconds;
        t[4] += tokens;
        t[5] += tokens * a.plainCost();
    }

    /** Returns bucket, noting what kind of step it is for the trace. */
    private int traced(Account a, int kind, int bucket) {
        a.lastKind = kind;
        if (TRACE && bucket > 0) {
            a.trace[kind][6] += expectedCost(a, bucket);
            a.trace[kind][7] += a.expectedTokens(buckets[bucket]);
        }
        return bucket;
    }

    public int maxTreeNodes() {
        return buckets[buckets.length - 1];
    }

    /** The allowances the budget chooses among, smallest (plain decoding) first. */
    int[] sizes() {
        return buckets.clone();
    }

    private Account account(String policy) {
        return accounts.computeIfAbsent(policy, k -> new Account(buckets.length, maxTreeNodes()));
    }

    /** Whether measured costs may shrink trees (false: always {@link #maxTreeNodes()}). */
    public boolean adaptive() {
        return adaptive;
    }

    /**
     * What a policy may do this step: the tree size it may use, and whether it takes part in the step at all
     * ({@code attends}: asked for a tree, shown the outcome). A policy the budget holds to plain decoding between
     * probes does not attend: its step is plain decoding itself, with nothing of the policy's upkeep in it (EAGLE
     * copying the step's features, a draft cache kept current), which its credit could not pay for. It attends
     * again {@code wakeSteps} steps before its next probe, so that a policy that drafts from what it observed has
     * that much context then (see {@link DraftPolicy#observedStepsBeforeDrafting}).
     */
    public record Decision(int treeNodes, boolean attends) {}

    /** The tree size a policy may use this step (a policy that needs no steps observed before it drafts). */
    public int choose(String policy) {
        return decide(policy, 0).treeNodes();
    }

    /** What a policy that wants wakeSteps observed steps before it drafts may do this step. */
    public synchronized Decision decide(String policy, int wakeSteps) {
        if (!adaptive || buckets.length == 1) return new Decision(maxTreeNodes(), true);
        Account a = account(policy);
        boolean asleep = !a.attends; // it skipped the last step
        a.attends = true;
        int bucket = choose(a, asleep ? Math.max(0, wakeSteps) : 0);
        return new Decision(buckets[bucket], a.attends);
    }

    /**
     * The bucket a policy may use this step; clears {@code attends} for a step of plain decoding the policy skips.
     * wakeSteps: the steps it must observe before it drafts (0 if it attended the last step).
     */
    private int choose(Account a, int wakeSteps) {
        a.step++;
        double c0 = a.plainCost();
        if (c0 == 0) return traced(a, PLAIN, plain(a)); // the yardstick first
        if (a.probeAt >= 0) {
            // Woken: it observes until then, then the budget decides as usual.
            if (a.step < a.probeAt) return traced(a, WAKING, plain(a));
            a.probeAt = -1;
        }
        int best = best(a);
        if (rate(a, best) > (1 + MARGIN_PERCENT / 100.0 + Math.min(NOISE_MARGIN_CAP, NOISE_ERRORS * relativeError(a, best))) / c0 && a.credit >= 0) {
            if (wakeSteps > 0) return wake(a, wakeSteps); // profitable again after a dormant stretch (c0 moved)
            if (!a.speculating) {
                a.speculating = true;
                a.creditAtStretchStart = a.credit;
            }
            int plainEvery = a.costs[0].size() < COST_SAMPLES ? PLAIN_EVERY_WHILE_FEW : PLAIN_EVERY;
            if (a.step - a.lastPlain > plainEvery) return traced(a, YARDSTICK, plain(a));
            int up = best + 1;
            if (up < buckets.length && a.step - a.lastNeighbour > NEIGHBOURS_EVERY && expectedLoss(a, up) <= a.credit) {
                a.lastNeighbour = a.step;
                return traced(a, BIGGER, up);
            }
            return traced(a, BEST, best);
        }
        if (a.speculating) {
            // A stretch of speculation ended: probe soon again only if it paid.
            a.speculating = false;
            if (a.credit > a.creditAtStretchStart) a.probeGap = MIN_PROBE_GAP;
            a.nextProbe = a.step + a.probeGap;
        }
        double catchUp = a.catchUpPerStep * (a.step - a.lastTreeStep);
        // A probe after a dormant stretch must also pay for the steps the policy observes first, at what its plain
        // steps cost it.
        if (a.step >= a.nextProbe && expectedLoss(a, best) + catchUp + wakeSteps * a.upkeep <= a.credit) {
            if (wakeSteps > 0) return wake(a, wakeSteps);
            a.nextProbe = a.step + a.probeGap;
            a.probing = true;
            a.probes++;
            a.speculating = true;
            a.creditAtStretchStart = a.credit;
            return traced(a, PROBE, best);
        }
        a.attends = false; // plain decoding, the fixed point: nothing of the policy's runs
        return traced(a, PLAIN, plain(a));
    }

    /** A plain step the policy attends, the first of wakeSteps before it may draft. */
    private int wake(Account a, int wakeSteps) {
        a.probeAt = a.step + wakeSteps;
        return traced(a, WAKING, plain(a));
    }

    /** Bucket 0, plain decoding. */
    private int plain(Account a) {
        a.lastPlain = a.step;
        return 0;
    }

    /**
     * Whether a policy is held to plain decoding and skips its steps, with no wake-up planned: a request starting
     * now need not prepare it (EAGLE's layer run over the prompt), since it will not draft before it is woken and
     * has observed the steps it needs.
     */
    public synchronized boolean dormant(String policy) {
        if (!adaptive || buckets.length == 1) return false;
        Account a = accounts.get(policy);
        return a != null && !a.attends && a.probeAt < 0 && !a.speculating;
    }

    /**
     * Whether a policy that was just held to plain decoding should still learn from the step
     * ({@link DraftPolicy#observeBatch}): always while it speculates, and on one plain step in
     * {@value #LEARN_EVERY_PLAIN} while backed off. Learning is part of what speculation costs (Token Recycling's
     * top-k of a whole vocabulary row per tree node, a sizeable fraction of a plain step on the demo target); backed off, the
     * policy keeps learning a little, for its next probe, at a small fraction of that cost, paid from its credit
     * like a probe (a policy whose learning the allowance cannot pay stops learning until it can).
     */
    public synchronized boolean learnsWhilePlain(String policy) {
        if (!adaptive || buckets.length == 1) return true;
        Account a = accounts.get(policy);
        return a == null || a.speculating || (a.step % LEARN_EVERY_PLAIN == 0 && a.credit >= a.learnCost);
    }

    /**
     * The speculative bucket of most expected tokens per expected second, among the measured ones and the next size
     * up from each (sizes are explored one at a time: a prediction far off costs one step, not a jump to the
     * largest tree).
     */
    private int best(Account a) {
        int best = 1;
        double bestRate = -1;
        for (int i = 1; i < buckets.length; i++) {
            if (i > 1 && a.costs[i].size() == 0 && a.costs[i - 1].size() == 0) continue;
            double rate = rate(a, i);
            if (rate > bestRate) {
                bestRate = rate;
                best = i;
            }
        }
        return best;
    }

    /**
     * The relative standard error of comparing bucket i's cost with c0's: both estimates' errors combined (an
     * unmeasured bucket, or one measured fewer than {@value #SCATTER_SAMPLES} times, is taken to scatter as plain
     * steps do).
     */
    private static double relativeError(Account a, int i) {
        double plain = Math.max(0, a.costs[0].relativeError());
        double tree = a.costs[i].relativeError();
        if (tree < 0) tree = plain;
        return Math.sqrt(plain * plain + tree * tree);
    }

    private double rate(Account a, int i) {
        return a.expectedTokens(buckets[i]) / expectedCost(a, i);
    }

    /** Seconds a step of bucket i is expected to lose against decoding its tokens plainly (0 if it should win). */
    private double expectedLoss(Account a, int i) {
        return Math.max(0, expectedCost(a, i) - a.expectedTokens(buckets[i]) * a.plainCost());
    }

    /**
     * Seconds a step allowed bucket i's nodes is expected to take: a tree of that size when the policy proposes
     * one, a plain step when it proposes nothing (prompt lookup finding no match).
     */
    private double expectedCost(Account a, int i) {
        double c0 = a.plainCost();
        return c0 + a.proposing * (predictedCost(a, i) - c0);
    }

    /**
     * Bucket i's measured cost, or if unmeasured, interpolated linearly in nodes between the measured buckets
     * around it, or extrapolated from the largest measured below (from plain decoding alone, UNMEASURED_NODE_COST
     * per node).
     */
    private double predictedCost(Account a, int i) {
        double measured = a.cost(i);
        if (measured != 0) return measured;
        double c0 = a.plainCost();
        int below = i - 1;
        while (below > 0 && a.cost(below) == 0) below--;
        int above = i + 1;
        while (above < buckets.length && a.cost(above) == 0) above++;
        double cBelow = a.cost(below);
        if (above < buckets.length) {
            double f = (buckets[i] - buckets[below]) / (double) (buckets[above] - buckets[below]);
            return Math.max(cBelow, cBelow + f * (a.cost(above) - cBelow));
        }
        if (below == 0) return (1 + UNMEASURED_NODE_COST * (buckets[i] - 1)) * c0;
        return cBelow + Math.max(0, cBelow - c0) * (buckets[i] - buckets[below]) / (buckets[below] - 1.0);
    }

    /** Records a step as allowed nodes, seconds and tokens, without knowing the tree's size or its drafting time. */
    public void record(String policy, int allowed, double seconds, int tokens) {
        record(policy, allowed, allowed, 0, seconds, tokens);
    }

    /**
     * Records a step: the size the policy was allowed, the size of the tree it proposed, the seconds of its
     * drafting and of the whole step (drafting included), and the tokens the step gave (accepted plus bonus).
     */
    public void record(String policy, int allowed, int treeNodes, double draftSeconds, double seconds, int tokens) {
        record(policy, allowed, treeNodes, draftSeconds, 0, seconds, tokens);
    }

    /**
     * As above, also telling the seconds the policy spent learning from the step (observing its outcome), which the
     * whole step's seconds include. On a plain step that and its drafting (a root alone) are all the policy costs
     * beyond plain decoding: they are left out of c0 and charged to the account (a backed-off policy learns only when its credit pays for it, see
     * {@link #learnsWhilePlain}); on a speculative step it is charged in full, like drafting.
     */
    public synchronized void record(String policy, int allowed, int treeNodes, double draftSeconds, double learnSeconds,
                                    double seconds, int tokens) {
        if (!adaptive || buckets.length == 1) return;
        Account a = account(policy);
        int i = bucketOf(allowed);
        if (i == 0) {
            notePlain(a, seconds - draftSeconds - learnSeconds);
            a.learnCost = Math.max(learnSeconds, LEARN_COST_DECAY * a.learnCost); // the recent learning steps' cost
            if (a.attends) a.upkeep = a.upkeep == 0 ? draftSeconds + learnSeconds : UPKEEP_DECAY * a.upkeep + (1 - UPKEEP_DECAY) * (draftSeconds + learnSeconds);
            // All the policy did on a plain step beyond plain decoding (asked for a tree it may not draft, learned)
            // is paid from the credit: a policy whose plain steps eat the allowance gets no probes on top.
            a.credit += ALLOWANCE * seconds - draftSeconds - learnSeconds;
            trace(a, seconds, draftSeconds + learnSeconds, draftSeconds + learnSeconds, tokens);
            if (TRACE_STEPS && a.lastKind == WAKING)
                System.err.printf(java.util.Locale.ROOT, "budget step %s #%d waking: %.3f ms (policy %.3f), c0 %.3f, credit %.3f%n",
                        policy, a.step, 1e3 * seconds, 1e3 * (draftSeconds + learnSeconds), 1e3 * a.plainCost(), 1e3 * a.credit);
        } else {
            draftSeconds += learnSeconds;
            a.speculativeSteps++;
            a.learnAcceptance(allowed, treeNodes, tokens - 1);
            double c0 = a.plainCost();
            // A lone root is a plain step (its drafting aside); a tree's cost is its size's.
            double expected = c0 == 0 ? 0 : treeNodes <= 1 ? c0 + draftSeconds : predictedCost(a, bucketOf(treeNodes));
            if (treeNodes <= 1) {
                notePlain(a, seconds - draftSeconds);
            } else if (a.trees < WARM_UP_TREES) {
                // the policy's first trees run its code for the first time (prompt lookup's took 2-3 times a later
                // tree's step, under the outlier bar): charged below, but not taken as what the size costs
            } else {
                Costs costs = a.costs[bucketOf(treeNodes)];
                if (c0 != 0 && seconds > OUTLIER * expected && costs.outliersInARow < OUTLIERS_IN_A_ROW) {
                    costs.outliersInARow++; // first use, or preempted: not what the size costs (see the class comment)
                } else {
                    costs.outliersInARow = 0;
                    costs.add(seconds);
                }
            }
            if (c0 == 0) {
                trace(a, seconds, 0, draftSeconds, tokens);
                return;
            }
            c0 = a.plainCost();
            // The forward's noise is capped; the policy's own drafting is charged in full (a draft model or early
            // exit catching its cache up over every token since its last draft is what probing it costs, however
            // far above the usual step), but for its first few drafts longer than the step was expected to take
            // (code compiled and linked on first use).
            // Only a step slower than the size's usual ones is capped: steps that are often slow (a draft model's pool
            // and the target's contending for the cores) are what the size costs, whatever its median says.
            double usual = treeNodes > 1 ? Math.max(expected, a.costs[bucketOf(treeNodes)].upperQuartile()) : expected;
            double charged = Math.min(seconds, SAMPLE_CAP * usual);
            boolean longDraft = draftSeconds > charged;
            if (treeNodes > 1) a.trees++;
            boolean forgiven = longDraft && a.trees <= WARM_UP_TREES;
            if (treeNodes > 1) {
                // What drafting cost beyond the capped step, per step since the policy last drafted: the price of
                // catching up, which a probe after a gap will pay again (0 when a probe after a gap paid none).
                long gap = a.step - a.lastTreeStep;
                if (longDraft && !forgiven) a.catchUpPerStep = (draftSeconds - charged) / Math.max(1, gap);
                else if (!longDraft) a.catchUpPerStep = 0;
                a.lastTreeStep = a.step;
            }
            if (longDraft && !forgiven) charged = draftSeconds;
            double win = tokens * c0 - charged;
            trace(a, seconds, charged, draftSeconds, tokens);
            if (TRACE_STEPS)
                System.err.printf(java.util.Locale.ROOT, "budget step %s #%d %s: allowed %d, nodes %d, %.3f ms (drafting %.3f), charged %.3f, %d tokens, c0 %.3f, credit %.3f -> %.3f%n",
                        policy, a.step, TRACE_KINDS[a.lastKind], allowed, treeNodes, 1e3 * seconds, 1e3 * draftSeconds, 1e3 * charged, tokens, 1e3 * c0, 1e3 * a.credit, 1e3 * (a.credit + win));
            a.credit += win;
            a.won += win;
            if (a.probing) {
                // Probes that lose thin out; one that about breaks even (prompt lookup finding nothing is a plain
                // step) costs nothing worth waiting for.
                // A size's cost is believed once a few steps measured it: the first ones after its warm-up are
                // often still slow (code paths used for the first time), and one slow step must not space out
                // the probes that would measure it again.
                a.probing = false;
                if (a.costs[Math.max(1, bucketOf(treeNodes))].size() >= MEASURED_STEPS && expectedLoss(a, best(a)) > BREAK_EVEN * c0)
                    a.probeGap = Math.min(2 * a.probeGap, MAX_PROBE_GAP);
            }
        }
        a.credit = Math.min(a.credit, CREDIT_CAP_STEPS * a.plainCost());
    }

    private static void notePlain(Account a, double seconds) {
        if (seconds <= 0) return;
        double before = a.plainCost();
        boolean few = a.costs[0].size() < COST_SAMPLES;
        a.costs[0].add(seconds);
        double c0 = a.plainCost();
        if (a.costs[0].size() == FIRST_PLAIN_STEPS) a.credit += INITIAL_CREDIT_STEPS * c0; // B0, once
        // A yardstick that fell while it rested on its first few samples shows they ran cold code and the wins
        // credited against it were overstated: by how much is not known, so the credit starts over. (Later, the
        // median of a full window moves with the machine's load; that is noise the cost estimates share.)
        if (few && before > 0 && c0 < YARDSTICK_FELL * before) a.credit = Math.min(a.credit, INITIAL_CREDIT_STEPS * c0);
    }

    private int bucketOf(int nodes) {
        for (int i = 0; i < buckets.length; i++) if (nodes <= buckets[i]) return i;
        return buckets.length - 1;
    }

    /** A copy of a policy's account, for tests (null if the policy never stepped). */
    synchronized Account snapshot(String policy) {
        Account a = accounts.get(policy);
        if (a == null) return null;
        Account c = new Account(buckets.length, maxTreeNodes());
        for (int i = 0; i < buckets.length; i++) c.costs[i] = a.costs[i].copy();
        System.arraycopy(a.tried, 0, c.tried, 0, a.tried.length);
        System.arraycopy(a.accepted, 0, c.accepted, 0, a.accepted.length);
        c.proposing = a.proposing;
        c.credit = a.credit;
        c.step = a.step;
        c.probes = a.probes;
        c.speculativeSteps = a.speculativeSteps;
        c.won = a.won;
        c.speculating = a.speculating;
        return c;
    }
}
