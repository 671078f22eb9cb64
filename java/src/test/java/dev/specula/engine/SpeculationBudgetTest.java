package dev.specula.engine;

import static org.junit.jupiter.api.Assertions.*;

import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/**
 * The back-off with a fake cost clock: a simulated drafter on a simulated machine, so every figure is
 * deterministic. A step of n nodes costs {@code c0 (1 + perNode (n - 1)) + draft (n - 1)} seconds (times noise,
 * where a test asks for it) and accepts each chain token with probability alpha until the first rejection.
 * Plain decoding of the same tokens costs {@code tokens c0}, times the same step's noise: the machine was
 * that busy then, whichever way the tokens were decoded.
 */
class SpeculationBudgetTest {
    static final double C0 = 0.01;

    /** A simulated drafter and machine. */
    record Machine(double perNode, double draftPerToken, double noise, double spikeChance) {
        static Machine of(double perNode, double draftPerToken) {
            return new Machine(perNode, draftPerToken, 0, 0);
        }
    }

    /** What a simulated run did. */
    static final class Run {
        double seconds;
        long tokens;
        long steps;
        long speculativeSteps;
        long treeSteps; // steps that ran drafts through the target
        double plainSeconds; // the same tokens decoded plainly, at the same moments

        double ratio() {
            return seconds / plainSeconds;
        }

        double lost() {
            return seconds - plainSeconds;
        }
    }

    private static double noise(Machine m, SplittableRandom rng) {
        double f = 1 + (rng.nextDouble() * 2 - 1) * m.noise();
        return rng.nextDouble() < m.spikeChance() ? 5 * f : f;
    }

    /** Decodes at least tokens tokens with a drafter of acceptance alpha; the budget learns as the loop would teach it. */
    static Run simulate(SpeculationBudget budget, String policy, Machine m, double alpha, long tokens, SplittableRandom rng) {
        Run run = new Run();
        while (run.tokens < tokens) {
            int allowed = budget.choose(policy);
            int drafted = allowed - 1;
            int accepted = 0;
            while (accepted < drafted && rng.nextDouble() < alpha) accepted++;
            double draft = m.draftPerToken() * drafted * C0;
            double noise = noise(m, rng);
            double seconds = (C0 * (1 + m.perNode() * drafted) + draft) * noise;
            budget.record(policy, allowed, allowed, draft, seconds, accepted + 1);
            run.seconds += seconds;
            run.plainSeconds += (accepted + 1) * C0 * noise;
            run.tokens += accepted + 1;
            run.steps++;
            if (allowed > 1) run.speculativeSteps++;
        }
        return run;
    }

    @Test
    void aDrafterThatNeverHitsConvergesToPlainDecodingWithBoundedOverhead() {
        // A draft model's cost (a quarter of the target per drafted token) and a compute-bound verifier.
        Machine m = Machine.of(0.3, 0.25);
        for (long tokens : new long[] {128, 512, 4096}) {
            SpeculationBudget budget = new SpeculationBudget(17, true);
            Run run = simulate(budget, "bad", m, 0, tokens, new SplittableRandom(1));
            assertTrue(run.ratio() <= 1.03, tokens + " tokens: " + run.ratio() + "x the plain time");
            // the bound of the javadoc: eps P + B0 + one step's loss
            double bound = SpeculationBudget.ALLOWANCE * run.seconds + C0 + C0 * (0.3 + 0.25) * 16;
            assertTrue(run.lost() <= bound, "lost " + (run.lost()) + " s, bound " + bound);
        }
        SpeculationBudget budget = new SpeculationBudget(17, true);
        Run run = simulate(budget, "bad", m, 0, 20_000, new SplittableRandom(2));
        assertTrue(run.ratio() <= 1.012, "a long run tends to the allowance: " + run.ratio());
        // and the last stretch is plain decoding but for rare probes
        Run tail = simulate(budget, "bad", m, 0, 2_000, new SplittableRandom(3));
        assertTrue(tail.speculativeSteps <= 2_000 / SpeculationBudget.MAX_PROBE_GAP + 1, tail.speculativeSteps + " probes in 2000 steps");
    }

    @Test
    void aDrafterThatPaysKeepsSpeculating() {
        Machine m = Machine.of(0.02, 0);
        SpeculationBudget budget = new SpeculationBudget(17, true);
        Run run = simulate(budget, "good", m, 0.8, 4096, new SplittableRandom(4));
        assertTrue(run.ratio() < 0.5, "speculation should pay: " + run.ratio() + "x the plain time");
        assertTrue(run.speculativeSteps >= 0.9 * run.steps, run.speculativeSteps + " of " + run.steps + " steps speculated");
        // it grew its trees beyond the smallest
        var a = budget.snapshot("good");
        int[] sizes = budget.sizes();
        int largestMeasured = 0;
        for (int i = 0; i < sizes.length; i++) if (a.cost(i) > 0) largestMeasured = sizes[i];
        assertTrue(largestMeasured >= 8, "trees of 8 nodes or more were never measured: " + largestMeasured);
        assertTrue(a.won > 0);
    }

    @Test
    void aModestDrafterPaysForItsOwnExploration() {
        // acceptance 0.4 on cheap drafts: two-node trees pay a little, big ones lose
        Machine m = Machine.of(0.15, 0.05);
        SpeculationBudget budget = new SpeculationBudget(17, true);
        Run run = simulate(budget, "modest", m, 0.4, 4096, new SplittableRandom(5));
        assertTrue(run.ratio() < 1.0, "should beat plain: " + run.ratio());
    }

    @Test
    void reprobingIsRareOnceSpeculationLoses() {
        Machine m = Machine.of(0.3, 0.25);
        SpeculationBudget budget = new SpeculationBudget(17, true);
        int steps = 10_000;
        simulate(budget, "bad", m, 0, steps, new SplittableRandom(6));
        var a = budget.snapshot("bad");
        // gaps double from MIN to MAX: log2(MAX / MIN) + 1 probes, then one per MAX_PROBE_GAP steps at most
        long bound = 1 + Long.numberOfTrailingZeros(SpeculationBudget.MAX_PROBE_GAP / SpeculationBudget.MIN_PROBE_GAP)
                + steps / SpeculationBudget.MAX_PROBE_GAP;
        assertTrue(a.probes <= bound, a.probes + " probes, bound " + bound);
        assertTrue(a.probes >= 3, "it should still look now and then: " + a.probes);
        assertEquals(a.probes, a.speculativeSteps, "every speculative step of a losing drafter is a probe");
    }

    @Test
    void probesThatBreakEvenStayFrequentButArePaidFor() {
        // prompt lookup finding nothing: a probe is a plain step and a little lookup
        Machine m = Machine.of(0.04, 0.01);
        SpeculationBudget budget = new SpeculationBudget(17, true);
        Run run = simulate(budget, "lookup", m, 0, 4096, new SplittableRandom(10));
        var a = budget.snapshot("lookup");
        assertTrue(a.probes > 4096 / SpeculationBudget.MAX_PROBE_GAP, "break-even probes do not thin out: " + a.probes);
        assertTrue(run.ratio() <= 1 + SpeculationBudget.ALLOWANCE + 0.005, "but the allowance pays for them: " + run.ratio());
    }

    @Test
    void noisyTimingsDoNotBreakTheBound() {
        // +-30% on every step and a 5x preemption on 2% of steps, plain and speculative alike
        Machine m = new Machine(0.3, 0.25, 0.3, 0.02);
        for (int seed = 0; seed < 5; seed++) {
            SpeculationBudget budget = new SpeculationBudget(17, true);
            Run run = simulate(budget, "bad", m, 0, 2048, new SplittableRandom(100 + seed));
            assertTrue(run.ratio() <= 1.03, "seed " + seed + ": " + run.ratio() + "x the plain time");
        }
    }

    @Test
    void creditWonEarlierBoundsTheLossWhenADrafterTurnsBad() {
        Machine m = Machine.of(0.2, 0.1);
        SpeculationBudget budget = new SpeculationBudget(17, true);
        simulate(budget, "turns", m, 0.9, 2000, new SplittableRandom(7));
        Run bad = simulate(budget, "turns", m, 0, 1000, new SplittableRandom(8));
        // at most the capped credit, the allowance and one step's loss
        double bound = SpeculationBudget.CREDIT_CAP_STEPS * C0 + SpeculationBudget.ALLOWANCE * bad.seconds + C0 * (0.2 + 0.1) * 16;
        assertTrue(bad.lost() <= bound, "lost " + (bad.lost()) + " s, bound " + bound);
        assertTrue(bad.ratio() <= 1.03, bad.ratio() + "x");
    }

    @Test
    void policiesHaveSeparateAccounts() {
        Machine m = Machine.of(0.2, 0.1);
        SpeculationBudget budget = new SpeculationBudget(17, true);
        SplittableRandom rng = new SplittableRandom(9);
        Run good = new Run(), bad = new Run();
        for (int i = 0; i < 200; i++) {
            Run g = simulate(budget, "good", m, 0.8, 8, rng), b = simulate(budget, "bad", m, 0, 8, rng);
            good.speculativeSteps += g.speculativeSteps;
            good.steps += g.steps;
            bad.speculativeSteps += b.speculativeSteps;
            bad.steps += b.steps;
        }
        assertTrue(good.speculativeSteps > 0.8 * good.steps, "good: " + good.speculativeSteps + "/" + good.steps);
        assertTrue(bad.speculativeSteps < 0.1 * bad.steps, "bad: " + bad.speculativeSteps + "/" + bad.steps);
    }

    /**
     * A demo-like target, as measured on the demo target: a tree of up to 4 nodes costs about one token's step (the
     * decode kernel reads each weight once for all of them), bigger ones are compute-bound, 0.6 plain steps per
     * node more.
     */
    static double demoStepCost(int nodes) {
        return C0 * (nodes <= 4 ? 1 + 0.05 * (nodes - 1) : 1.15 + 0.6 * (nodes - 4));
    }

    /** Code compiled and linked on first use: what a first-time step costs, in plain steps (50-100 measured). */
    static final double WARM_UP_STEPS = 60;

    /**
     * Requests of requestTokens tokens decoded one after another with a prompt-lookup-like drafter: for the first
     * coldTokens tokens of each request it finds nothing to copy (half the time it proposes nothing, otherwise a
     * chain that is rejected), then it finds the text repeating and proposes chains of up to 8 drafts, each
     * accepted with probability hotAlpha. Warm-up as in a fresh process: the first step at each tree size, and the
     * drafter's first three proposals, cost WARM_UP_STEPS plain steps more; the budget sees it, the run's time
     * leaves it out (a process pays it once, whatever the policy). Returns the last request's run.
     */
    static Run simulateBursty(SpeculationBudget budget, String policy, double hotAlpha, int coldTokens, int requestTokens,
                              int requests, SplittableRandom rng) {
        java.util.Set<Integer> sizesSeen = new java.util.HashSet<>();
        int proposals = 0;
        Run run = null;
        for (int r = 0; r < requests; r++) {
            run = new Run();
            while (run.tokens < requestTokens) {
                int allowed = budget.choose(policy);
                boolean hot = run.tokens >= coldTokens;
                int drafted = allowed == 1 || (!hot && rng.nextBoolean()) ? 0 : Math.min(allowed - 1, 8);
                int accepted = 0;
                while (hot && accepted < drafted && rng.nextDouble() < hotAlpha) accepted++;
                int nodes = drafted + 1;
                double draft = drafted > 0 ? 0.02 * C0 : 0;
                double seconds = demoStepCost(nodes) + draft;
                double forwardWarmUp = sizesSeen.add(nodes) ? WARM_UP_STEPS * C0 : 0; // the target's kernels
                double draftWarmUp = drafted > 0 && proposals++ < 3 ? WARM_UP_STEPS * C0 : 0; // the drafter's code
                budget.record(policy, allowed, nodes, draft + draftWarmUp, seconds + forwardWarmUp + draftWarmUp, accepted + 1);
                run.seconds += seconds; // the warm-up is paid once per process, whatever the policy
                run.plainSeconds += (accepted + 1) * C0;
                run.tokens += accepted + 1;
                run.steps++;
                if (allowed > 1) run.speculativeSteps++;
                if (nodes > 1) run.treeSteps++;
            }
        }
        return run;
    }

    @Test
    void aDrafterWhoseDraftsPayInBurstsFindsTheSmallTreesThatPayDespiteWarmUp() {
        // The demo's shape (regression: the budget kept prompt lookup plain there, 1.00 tokens per step): a cold
        // start that loses, first-use steps of 60 plain steps, then repeating text where 4-node chains pay ~3x.
        for (int seed = 0; seed < 5; seed++) {
            SpeculationBudget budget = new SpeculationBudget(17, true);
            Run run = simulateBursty(budget, "pld", 0.9, 40, 160, 3, new SplittableRandom(200 + seed));
            double tokensPerStep = (double) run.tokens / run.steps;
            assertTrue(run.ratio() < 0.7, "seed " + seed + ": " + run.ratio() + "x the plain time, " + tokensPerStep + " tokens/step");
            assertTrue(tokensPerStep > 1.8, "seed " + seed + ": " + tokensPerStep + " tokens/step");
        }
    }

    @Test
    void aUselessDrafterStaysPlainDespiteWarmUpAndTheSameCostCurve() {
        // the same machine and warm-up, drafts never accepted (the cold phase never ends)
        for (int seed = 0; seed < 5; seed++) {
            SpeculationBudget budget = new SpeculationBudget(17, true);
            Run run = simulateBursty(budget, "useless", 0, Integer.MAX_VALUE, 160, 3, new SplittableRandom(300 + seed));
            // plain decoding, but for probes the allowance pays (on this curve a 2-node probe about breaks even)
            assertTrue(run.ratio() <= 1 + SpeculationBudget.ALLOWANCE + 0.005, "seed " + seed + ": " + run.ratio() + "x the plain time, "
                    + run.treeSteps + " of " + run.steps + " steps ran drafts");
        }
    }

    @Test
    void theBestSizeMaximizesTokensPerSecondSmallOnesIncluded() {
        // On the demo-like curve with acceptance 0.8 per chain token, 4 nodes give ~3 tokens for 1.15 steps, 8 give
        // ~4 for 3.55: the budget must settle at a small size (2 to 4 nodes), not back off and not grow.
        SpeculationBudget budget = new SpeculationBudget(17, true);
        SplittableRandom rng = new SplittableRandom(11);
        int[] chosen = new int[18];
        for (int step = 0; step < 3000; step++) {
            int allowed = budget.choose("chain");
            int accepted = 0;
            while (accepted < allowed - 1 && rng.nextDouble() < 0.8) accepted++;
            budget.record("chain", allowed, allowed, 0, demoStepCost(allowed), accepted + 1);
            if (step >= 1000) chosen[allowed]++;
        }
        int small = chosen[2] + chosen[3] + chosen[4];
        assertTrue(small >= 0.9 * 2000, "small trees chosen " + small + " of 2000 steps: " + java.util.Arrays.toString(chosen));
        assertTrue(chosen[4] >= chosen[2], "4 nodes pay best: " + java.util.Arrays.toString(chosen));
    }

    @Test
    void probesThatCatchADraftCacheUpArePaidInFull() {
        // A draft model whose drafts never pass: each probe first catches its cache up over every token since its
        // last draft (a quarter of a plain step each), a cost that grows with the gap between probes.
        for (int seed = 0; seed < 3; seed++) {
            SpeculationBudget budget = new SpeculationBudget(17, true);
            SplittableRandom rng = new SplittableRandom(400 + seed);
            Run run = new Run();
            long lastDraft = 0;
            while (run.tokens < 4096) {
                int allowed = budget.choose("draft-model");
                double draft = 0;
                if (allowed > 1) {
                    draft = (run.tokens - lastDraft + allowed - 1) * 0.25 * C0;
                    lastDraft = run.tokens;
                }
                double noise = 1 + 0.1 * rng.nextDouble();
                double seconds = (C0 * (1 + 0.1 * (allowed - 1)) + draft) * noise;
                budget.record("draft-model", allowed, allowed, draft * noise, seconds, 1);
                run.seconds += seconds;
                run.plainSeconds += C0 * noise;
                run.tokens++;
                run.steps++;
            }
            assertTrue(run.ratio() <= 1.03, "seed " + seed + ": " + run.ratio() + "x the plain time");
        }
    }

    @Test
    void aYardstickMeasuredWhileColdIsRefreshedBeforeSpeculationLosesOnIt() {
        // The first plain steps run cold code (1.6x their later cost). A draft model whose trees lose 8% or more at
        // the true c0 looks like a winner against that c0: the budget must re-measure plain decoding before long
        // (the old budget refreshed c0 once per 64 steps and kept the cold median for about 250 steps).
        Machine m = Machine.of(0.5, 0.35);
        for (int seed = 0; seed < 5; seed++) {
            SpeculationBudget budget = new SpeculationBudget(17, true);
            SplittableRandom rng = new SplittableRandom(500 + seed);
            Run run = new Run();
            int plainSteps = 0;
            while (run.tokens < 512) {
                int allowed = budget.choose("draft-model");
                int drafted = allowed - 1, accepted = 0;
                while (accepted < drafted && rng.nextDouble() < 0.7) accepted++;
                double cold = allowed == 1 && plainSteps++ < 3 ? 1.6 : 1; // cold code, paid whichever way
                double draft = m.draftPerToken() * drafted * C0;
                double seconds = C0 * (1 + m.perNode() * drafted) + draft;
                budget.record("draft-model", allowed, allowed, draft, seconds * cold, accepted + 1);
                run.seconds += seconds * cold;
                run.plainSeconds += (accepted + 1) * C0 * cold;
                run.tokens += accepted + 1;
                run.steps++;
            }
            assertTrue(run.ratio() <= 1.03, "seed " + seed + ": " + run.ratio() + "x the plain time");
        }
    }

    @Test
    void aSizeWhoseFirstTreesRanSlowCodeIsTriedAgainSoon() {
        // Prompt lookup on repeating text (9 drafts in 10 accepted) whose first three trees ran its drafting code
        // cold: 1.5 plain steps more, under the outlier threshold. One such step must not be taken as what the size
        // costs (the old budget then waited about 100 steps for the credit to probe it again).
        for (int seed = 0; seed < 5; seed++) {
            SpeculationBudget budget = new SpeculationBudget(17, true);
            SplittableRandom rng = new SplittableRandom(600 + seed);
            Run run = new Run();
            int trees = 0;
            while (run.tokens < 160) {
                int allowed = budget.choose("pld");
                int drafted = Math.min(allowed - 1, 8), accepted = 0;
                while (accepted < drafted && rng.nextDouble() < 0.9) accepted++;
                double draft = drafted > 0 ? 0.02 * C0 + (trees++ < 3 ? 1.5 * C0 : 0) : 0;
                double seconds = demoStepCost(drafted + 1) + draft;
                budget.record("pld", allowed, drafted + 1, draft, seconds, accepted + 1);
                run.seconds += seconds;
                run.plainSeconds += (accepted + 1) * C0;
                run.tokens += accepted + 1;
                run.steps++;
            }
            assertTrue(run.ratio() < 0.8, "seed " + seed + ": " + run.ratio() + "x the plain time, "
                    + (double) run.tokens / run.steps + " tokens/step");
        }
    }

    @Test
    void learningWhileBackedOffIsPaidFromTheCredit() {
        // A policy that never drafts anything useful and whose learning on a plain step costs half a plain step
        // (Token Recycling's update on a small target): backed off, it may learn only as often as the allowance pays.
        SpeculationBudget budget = new SpeculationBudget(17, true);
        double spent = 0, plain = 0;
        for (int step = 0; step < 4096; step++) {
            int allowed = budget.choose("learner");
            boolean learns = allowed > 1 || budget.learnsWhilePlain("learner");
            double learn = learns ? 0.5 * C0 : 0;
            double seconds = demoStepCost(allowed) + learn;
            budget.record("learner", allowed, allowed, 0, learn, seconds, 1);
            spent += seconds;
            plain += C0;
        }
        assertTrue(spent / plain <= 1.03, spent / plain + "x the plain time");
        var a = budget.snapshot("learner");
        assertEquals(C0, a.plainCost(), 1e-12, "learning is not part of what plain decoding costs");
    }

    /**
     * A drafter that never hits, held plain, whose every plain step still costs 2% of a plain step in its own
     * drafting (asked for a tree it may not draft, it keeps something up to date): that alone spends more than the
     * allowance, so the budget must not let it probe on top; its drafting is left out of c0 all the same.
     */
    @Test
    void draftingOnPlainStepsIsPaidFromTheCreditBeforeAnyProbe() {
        long[] probes = new long[2];
        double[] plainStepDraft = {0, 0.02 * C0};
        for (int k = 0; k < 2; k++) {
            SpeculationBudget budget = new SpeculationBudget(17, true);
            for (int step = 0; step < 8192; step++) {
                int allowed = budget.choose("busy");
                double draft = allowed > 1 ? 0.3 * C0 * (allowed - 1) : plainStepDraft[k];
                budget.record("busy", allowed, allowed, draft, 0, demoStepCost(allowed) + draft, 1);
            }
            var a = budget.snapshot("busy");
            probes[k] = a.probes;
            assertEquals(C0, a.plainCost(), 1e-12, "drafting is not part of what plain decoding costs");
        }
        assertTrue(probes[0] >= 5, "free plain steps leave the allowance for probes: " + probes[0]);
        assertTrue(probes[1] <= 2, "plain steps that spend the allowance leave none for probes: " + probes[1] + " (free: " + probes[0] + ")");
    }

    /**
     * A drafter whose trees are often slow: with probability slowChance a tree step takes slowFactor times its usual
     * cost (a draft model's thread pool and the target's contending for two cores), which the median of its steps
     * does not show. Plain steps scatter by plainNoise either way. Chains of acceptance alpha.
     */
    static Run simulateSkewed(SpeculationBudget budget, String policy, double perDraft, double alpha, double slowChance,
                              double slowFactor, double plainNoise, long tokens, SplittableRandom rng) {
        Run run = new Run();
        while (run.tokens < tokens) {
            int allowed = budget.choose(policy);
            int drafted = allowed - 1, accepted = 0;
            while (accepted < drafted && rng.nextDouble() < alpha) accepted++;
            double machine = 1 + (rng.nextDouble() * 2 - 1) * plainNoise;
            double seconds = C0 * (1 + perDraft * drafted) * machine;
            if (drafted > 0 && rng.nextDouble() < slowChance) seconds *= slowFactor;
            budget.record(policy, allowed, allowed, 0, seconds, accepted + 1);
            run.seconds += seconds;
            run.plainSeconds += (accepted + 1) * C0 * machine;
            run.tokens += accepted + 1;
            run.steps++;
            if (allowed > 1) run.speculativeSteps++;
        }
        return run;
    }

    @Test
    void treesThatAreOftenSlowAreChargedWhatTheyCost() {
        // By its median a tree of 2-5 nodes gives 20-25% more tokens per second than plain decoding; but 30% of tree
        // steps take twice as long, so on average every size loses 4-8%. The old budget believed the median and
        // charged those steps at 1.25x it (as if the machine's noise), and speculated at a loss (1.03-1.05x on 4 of
        // these 5 seeds; now 1.00-1.02x).
        for (int seed = 0; seed < 5; seed++) {
            SpeculationBudget budget = new SpeculationBudget(17, true);
            Run run = simulateSkewed(budget, "draft-model", 0.475, 0.8, 0.3, 2.0, 0.1, 2048, new SplittableRandom(700 + seed));
            assertTrue(run.ratio() <= 1.03, "seed " + seed + ": " + run.ratio() + "x the plain time, "
                    + run.speculativeSteps + " of " + run.steps + " steps speculative");
        }
    }

    @Test
    void aGainWithinTheNoiseIsNotTaken() {
        // Two-node trees that win about 6% (a draft model near break-even) on a machine whose every step scatters by
        // +-40%: the estimates cannot tell that from a loss, so the budget does not speculate on it, but probes (which
        // about break even, so they stay frequent). The old budget speculated on 60-76% of the steps; now 21-28%.
        for (int seed = 0; seed < 5; seed++) {
            SpeculationBudget budget = new SpeculationBudget(5, true);
            Run run = simulateSkewed(budget, "near", 0.6, 0.7, 0, 1, 0.4, 2048, new SplittableRandom(700 + seed));
            assertTrue(run.speculativeSteps < 0.4 * run.steps, "seed " + seed + ": " + run.speculativeSteps + " of " + run.steps + " steps speculative");
            assertTrue(run.ratio() <= 1.03, "seed " + seed + ": " + run.ratio() + "x the plain time");
        }
        // ...while on a quiet machine the same drafter's small win is measured, and taken (51-69% of the steps).
        SpeculationBudget quiet = new SpeculationBudget(5, true);
        Run run = simulateSkewed(quiet, "near", 0.6, 0.7, 0, 1, 0.01, 2048, new SplittableRandom(700));
        assertTrue(run.speculativeSteps > 0.45 * run.steps, run.speculativeSteps + " of " + run.steps + " steps speculative");
        assertTrue(run.ratio() < 0.99, run.ratio() + "x the plain time");
    }

    /**
     * A policy whose every step it takes part in costs it upkeep (in plain steps) beyond its drafting: EAGLE copying
     * the step's features and keeping its recent rows, on a target so small that this is a few percent of a step.
     * The simulated loop asks {@link SpeculationBudget#decide} and charges the upkeep only on steps the policy
     * attends (asked for a tree, shown the outcome), as the decode loop does. Drafts of acceptance alpha, each
     * costing draftPerToken plain steps, on the demo-like cost curve. Returns the run; in seen, kept across calls:
     * [0] the fewest steps attended in a row before a tree that followed a plain step (start it at MAX_VALUE), [1]
     * the steps attended in a row so far, [2] whether the last step ran a tree.
     */
    static Run simulateUpkeep(SpeculationBudget budget, String policy, int wakeSteps, boolean alwaysAttends, double upkeep,
                              double alpha, double draftPerToken, long tokens, SplittableRandom rng, int[] seen) {
        Run run = new Run();
        while (run.tokens < tokens) {
            SpeculationBudget.Decision d = budget.decide(policy, wakeSteps);
            boolean attends = alwaysAttends || d.attends();
            int allowed = d.treeNodes(), drafted = allowed - 1, accepted = 0;
            while (accepted < drafted && rng.nextDouble() < alpha) accepted++;
            double draft = drafted * draftPerToken * C0;
            double kept = attends && allowed == 1 ? upkeep * C0 : 0;
            double seconds = demoStepCost(allowed) + draft + kept;
            budget.record(policy, allowed, allowed, draft + kept, 0, seconds, accepted + 1);
            if (allowed > 1 && seen[2] == 0) seen[0] = Math.min(seen[0], seen[1]);
            seen[1] = attends ? seen[1] + 1 : 0;
            seen[2] = allowed > 1 ? 1 : 0;
            run.seconds += seconds;
            run.plainSeconds += (accepted + 1) * C0;
            run.tokens += accepted + 1;
            run.steps++;
            if (allowed > 1) run.speculativeSteps++;
        }
        return run;
    }

    @Test
    void aPolicyHeldPlainPaysNoUpkeepPlainDecodingIsTheFixedPoint() {
        // Upkeep of 3% of a plain step on every step the policy takes part in, drafts never accepted. The old budget
        // had every step attended: held plain, the policy still cost 1.03x plain decoding however rarely it probed,
        // and its credit never recovered (the allowance is 1%). Now a policy held plain between probes is not asked:
        // its steps are plain decoding, and it is woken wakeSteps steps before a probe, which the credit must pay for.
        int[] attended = new int[3];
        for (int seed = 0; seed < 5; seed++) {
            for (int wake : new int[] {0, 1, 16}) {
                SpeculationBudget budget = new SpeculationBudget(25, true);
                Run run = simulateUpkeep(budget, "eagle", wake, false, 0.03, 0, 0.3, 4096, new SplittableRandom(800 + seed), attended);
                assertTrue(run.ratio() <= 1 + SpeculationBudget.ALLOWANCE + 0.005, "seed " + seed + ", wake " + wake + ": " + run.ratio() + "x the plain time, "
                        + run.speculativeSteps + " speculative steps");
                assertTrue(budget.snapshot("eagle").probes >= 2, "it still looks now and then");
            }
            // the same policy taking part in every step (the old loop) loses its upkeep whatever the budget decides
            SpeculationBudget budget = new SpeculationBudget(25, true);
            Run old = simulateUpkeep(budget, "eagle", 16, true, 0.03, 0, 0.3, 4096, new SplittableRandom(800 + seed), attended);
            assertTrue(old.ratio() > 1.02, "seed " + seed + ": " + old.ratio());
        }
    }

    @Test
    void aWokenPolicyObservesItsStepsBeforeEveryProbeAndAGoodOneStillSpeculates() {
        for (int seed = 0; seed < 3; seed++) {
            // a drafter that loses: every probe comes after wakeSteps attended steps at least
            SpeculationBudget losing = new SpeculationBudget(25, true);
            int[] attended = {Integer.MAX_VALUE, 1 << 20, 0}; // it attended every step since the start
            simulateUpkeep(losing, "eagle", 16, false, 0.03, 0, 0.3, 8192, new SplittableRandom(900 + seed), attended);
            assertTrue(losing.snapshot("eagle").probes >= 2);
            assertTrue(attended[0] >= 16 && attended[0] < 1 << 20, "a probe came after only " + attended[0] + " attended steps");
            // one that pays (acceptance 0.8, cheap drafts) speculates nearly all the time, woken or not
            SpeculationBudget paying = new SpeculationBudget(25, true);
            Run run = simulateUpkeep(paying, "eagle", 16, false, 0.03, 0.8, 0.05, 4096, new SplittableRandom(950 + seed), attended);
            assertTrue(run.ratio() < 0.6, "seed " + seed + ": " + run.ratio() + "x the plain time");
            assertTrue(run.speculativeSteps >= 0.8 * run.steps, run.speculativeSteps + " of " + run.steps);
        }
    }

    @Test
    void fixedBudgetsAndLoneRoots() {
        SpeculationBudget fixed = new SpeculationBudget(17, false);
        for (int i = 0; i < 5; i++) {
            assertEquals(17, fixed.choose("p"));
            fixed.record("p", 17, 17, 0, 1, 1);
        }
        SpeculationBudget plain = new SpeculationBudget(1, true);
        assertEquals(1, plain.maxTreeNodes());
        for (int i = 0; i < 5; i++) {
            assertEquals(1, plain.choose("p"));
            plain.record("p", 1, 1, 0, 1, 1);
        }
        SpeculationBudget fresh = new SpeculationBudget(81, true);
        assertEquals(81, fresh.maxTreeNodes());
        assertEquals(1, fresh.choose("p"), "plain decoding is measured before anything is risked");
    }
}
