package dev.specula.engine;

import static org.junit.jupiter.api.Assertions.*;

import java.util.Arrays;
import org.junit.jupiter.api.Test;

/** The batch planner's arithmetic on made-up step costs: when drafts pay, when they stop paying, the token budget. */
class StepCostModelTest {
    /** Feeds steps of batch sequences whose drafts (allowed nodes each) give tokens per step, at the given cost. */
    static void train(StepCostModel m, int batch, int allowed, double tokens, double fixed, double perSequence, double perRow) {
        String[] names = new String[batch];
        Arrays.fill(names, "pld");
        for (int step = 0; step < 40; step++) {
            int drafting = step % (batch + 1); // varied shapes, so the fit can tell rows from sequences
            int[] allow = new int[batch], nodes = new int[batch], accepted = new int[batch];
            int rows = 0;
            for (int b = 0; b < batch; b++) {
                allow[b] = b < drafting ? allowed : 1;
                nodes[b] = allow[b];
                accepted[b] = b < drafting ? (int) Math.round(tokens - 1) : 0;
                rows += nodes[b];
            }
            m.observe(new StepPlanner.Outcome(fixed + perSequence * batch + perRow * rows, rows, names, allow, nodes, accepted));
        }
    }

    static int[] plan(StepCostModel m, int batch, int wish) {
        String[] names = new String[batch];
        Arrays.fill(names, "pld");
        int[] allowed = new int[batch];
        Arrays.fill(allowed, wish);
        boolean[] adaptive = new boolean[batch];
        Arrays.fill(adaptive, true);
        m.plan(names, allowed, adaptive);
        return allowed;
    }

    @Test
    void memoryBoundStepsKeepTheDrafts() {
        StepCostModel m = new StepCostModel(1000);
        // A weight read per step dominates; rows are nearly free.
        train(m, 4, 8, 3, 0.020, 0.0005, 0.0001);
        assertArrayEquals(new int[] {8, 8, 8, 8}, plan(m, 4, 8));
        double[] c = m.coefficients();
        assertEquals(0.0001, c[2], 1e-6, "per-row cost fitted: " + Arrays.toString(c));
    }

    @Test
    void computeBoundStepsDecodePlainly() {
        StepCostModel m = new StepCostModel(1000);
        // Every row costs as much as a sequence: 8 rows for 3 tokens loses to 1 row for 1 token.
        train(m, 8, 8, 3, 0.0, 0.0, 0.001);
        assertArrayEquals(new int[] {1, 1, 1, 1, 1, 1, 1, 1}, plan(m, 8, 8));
    }

    @Test
    void aLoneSequenceKeepsWhatItsBudgetChose() {
        // Regression: with one sequence the planner trimmed the budget's probes (drafts measured once at a loss),
        // so prompt lookup on the demo stayed plain; the budget alone weighs a lone sequence's drafts.
        StepCostModel m = new StepCostModel(1000);
        train(m, 1, 2, 1, 0.0, 0.0, 0.001);
        for (int step = 0; step < 40; step++) assertArrayEquals(new int[] {2}, plan(m, 1, 2));
        train(m, 2, 2, 1, 0.0, 0.0, 0.001);
        assertArrayEquals(new int[] {1, 1}, plan(m, 2, 2), "a batch still drops drafts that do not pay");
    }

    @Test
    void untilMeasuredTheDraftsStay() {
        StepCostModel m = new StepCostModel(1000);
        assertArrayEquals(new int[] {8, 8}, plan(m, 2, 8));
        train(m, 2, 8, 3, 0.0, 0.0, 0.001);
        String[] names = {"pld", "never-measured"};
        int[] allowed = {8, 8};
        m.plan(names, allowed, new boolean[] {true, true});
        assertArrayEquals(new int[] {1, 8}, allowed, "an unmeasured policy keeps its drafts so that they get measured");
        String[] same = {"pld", "pld"};
        int[] fixed = {8, 8};
        m.plan(same, fixed, new boolean[] {false, true});
        assertArrayEquals(new int[] {8, 1}, fixed, "a sequence that is not adaptive keeps its drafts");
    }

    @Test
    void anExploringStepOfABigBatchRunsOneWholeTreeInTurn() {
        // Regression: at a batch of 16 every exploring step ran all 16 wishes of 29 nodes (464 rows), each as dear as
        // dozens of plain steps, and recycling fell to 40% of plain decoding's rate.
        StepCostModel m = new StepCostModel(16 * 81);
        train(m, 16, 29, 1.2, 0.0, 0.0, 0.001); // compute-bound: drafts do not pay
        java.util.Set<Integer> explorers = new java.util.HashSet<>();
        int exploring = 0;
        for (int step = 0; step < 4 * StepCostModel.EXPLORE_EVERY; step++) {
            int[] allowed = plan(m, 16, 29);
            int drafts = Arrays.stream(allowed).sum() - 16;
            if (drafts == 0) continue;
            exploring++;
            assertEquals(28, drafts, "one whole tree of drafts: " + Arrays.toString(allowed));
            for (int b = 0; b < 16; b++) if (allowed[b] == 29) explorers.add(b);
        }
        assertEquals(4, exploring, "an exploring step every " + StepCostModel.EXPLORE_EVERY);
        assertEquals(4, explorers.size(), "each exploring step gives the tree to the next sequence: " + explorers);

        String[] names = new String[16];
        Arrays.fill(names, "pld");
        boolean[] adaptive = new boolean[16];
        Arrays.fill(adaptive, true);
        adaptive[3] = false;
        boolean sawExploring = false;
        for (int step = 0; step < StepCostModel.EXPLORE_EVERY; step++) {
            int[] allowed = new int[16];
            Arrays.fill(allowed, 29);
            m.plan(names, allowed, adaptive);
            assertEquals(29, allowed[3], "a sequence that is not adaptive keeps its tree, exploring or not");
            int others = Arrays.stream(allowed).sum() - 16 - 28;
            sawExploring |= others > 0;
            assertTrue(others == 0 || others == 28, "the adaptive ones share one tree at most: " + Arrays.toString(allowed));
        }
        assertTrue(sawExploring);
    }

    @Test
    void theTokenBudgetIsSharedRoundRobin() {
        StepCostModel m = new StepCostModel(10);
        int[] got = new int[4];
        for (int step = 0; step < 8; step++) {
            int[] allowed = plan(m, 4, 5);
            assertTrue(Arrays.stream(allowed).sum() <= 10, Arrays.toString(allowed));
            for (int b = 0; b < 4; b++) {
                assertTrue(allowed[b] >= 1);
                got[b] += allowed[b];
            }
        }
        int min = Arrays.stream(got).min().orElseThrow(), max = Arrays.stream(got).max().orElseThrow();
        assertTrue(max - min <= 4, "every sequence had its turn at the drafts: " + Arrays.toString(got));
        assertArrayEquals(new int[] {1, 1, 1, 1, 1, 1}, plan(new StepCostModel(3), 6, 5), "roots always run, even over the budget");
    }
}
