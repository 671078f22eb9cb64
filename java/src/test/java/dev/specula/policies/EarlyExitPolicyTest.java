package dev.specula.policies;

import static org.junit.jupiter.api.Assertions.*;

import dev.specula.engine.SpecStats;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Early-exit self-speculation is lossless at every exit layer, and the full model as drafter accepts everything. */
class EarlyExitPolicyTest {
    static final int LAYERS = 4;

    @TempDir
    static Path temp;
    static PolicyFixture fx;

    @BeforeAll
    static void setUp() {
        fx = new PolicyFixture(temp, LAYERS, 24);
    }

    @AfterAll
    static void tearDown() {
        fx.close();
    }

    @Test
    void everyFixedExitLayerIsLossless() {
        double previous = -1;
        for (int e = 1; e < LAYERS; e++) {
            SpecStats s = fx.checkLossless(EarlyExitPolicy.factory(fx.target, EarlyExitPolicy.Options.fixed(e, 3, PolicyFixture.CONTEXT)), 16, false);
            System.out.println("early exit at layer " + e + " of " + LAYERS + ", 3 drafts: " + PolicyFixture.describe(s));
            assertTrue(s.maxDepthReached() >= 1, "nothing was drafted");
            previous = s.acceptanceAtDepth(1);
        }
        // The deepest exit agrees with the full model part of the time even with random weights.
        assertTrue(previous > 0.05, "acceptance at depth 1 with exit layer " + (LAYERS - 1) + ": " + previous);
    }

    @Test
    void theWholeModelAsItsOwnDrafterAcceptsEverything() {
        SpecStats s = fx.checkLossless(EarlyExitPolicy.factory(fx.target, EarlyExitPolicy.Options.fixed(LAYERS, 4, PolicyFixture.CONTEXT)), 16, false);
        System.out.println("early exit at layer " + LAYERS + " (the whole model), 4 drafts: " + PolicyFixture.describe(s));
        assertTrue(s.meanAccepted() > 4.5, "mean accepted tokens per step " + s.meanAccepted());
        assertTrue(s.acceptanceAtDepth(1) > 0.95, "acceptance at depth 1 " + s.acceptanceAtDepth(1));
    }

    @Test
    void dynamicChoiceIsLosslessAndLearnsItsEstimates() {
        EarlyExitPolicy.Options options = EarlyExitPolicy.Options.dynamic(LAYERS, PolicyFixture.CONTEXT);
        assertArrayEquals(new int[] {1, 2, 3}, options.exitLayers());
        // A short shadow interval so that these short generations see several passes.
        double[] exact = runDynamic("exact shadow", new EarlyExitPolicy.Options(options.exitLayers(), 8, 0, 4, 0, PolicyFixture.CONTEXT));
        double[] windowed = runDynamic("windowed shadow", new EarlyExitPolicy.Options(options.exitLayers(), 8, 0, 4, 16, PolicyFixture.CONTEXT));
        // The estimates moved from their priors (0.45, 0.6, 0.75) to this random model's agreement, which the
        // fixed-exit runs measure at about 0.07, 0.14 and 0.29 (acceptance at depth 1). They are discounted means
        // of about the last 33 observations, so only loosely.
        for (double[] a : new double[][] {exact, windowed}) assertTrue(a[0] < 0.2 && a[1] < 0.3 && a[2] < 0.4, Arrays.toString(a));
        assertTrue(exact[0] < exact[2], "a deeper exit agrees more: " + Arrays.toString(exact));
    }

    /** Runs the prompts with a dynamic policy each, sharing estimates; returns the estimates at the end. */
    private static double[] runDynamic(String label, EarlyExitPolicy.Options options) {
        List<EarlyExitPolicy> made = new ArrayList<>();
        var factory = EarlyExitPolicy.factory(fx.target, options);
        SpecStats s = fx.checkLossless(() -> {
            EarlyExitPolicy p = factory.get();
            made.add(p);
            return p;
        }, 16, false);
        int k = options.exitLayers().length;
        double[] mean = made.get(0).acceptanceEstimates();
        int[] chosen = new int[k];
        for (EarlyExitPolicy p : made) {
            assertSame(made.get(0).estimates(), p.estimates());
            for (int i = 0; i < k; i++) chosen[i] += p.timesChosen()[i];
        }
        System.out.printf("dynamic early exit, %s: %s; estimates %s, steps drafted with each exit %s%n", label,
                PolicyFixture.describe(s), Arrays.toString(Arrays.stream(mean).map(v -> Math.round(v * 1000) / 1000.0).toArray()),
                Arrays.toString(chosen));
        assertTrue(s.maxDepthReached() >= 1, "nothing was drafted");
        // At these acceptance rates no draft pays for itself (a = 0.29 at exit 3 of 4 gives 1.29 tokens for 7
        // layers, against 1 for 4): once it has learned that, the policy decodes plainly nearly always.
        assertTrue(Arrays.stream(chosen).sum() < s.steps() / 10, "drafted at " + Arrays.toString(chosen) + " of " + s.steps() + " steps");
        return mean;
    }

    @Test
    void theChoiceFollowsTheCostModel() {
        int[] exits = {2, 4, 6};
        // High agreement at a shallow exit: draft long from there.
        int[] c = EarlyExitPolicy.choose(new double[] {0.9, 0.95, 0.97}, exits, 8, 8, 0);
        assertEquals(0, c[0]);
        assertTrue(c[1] >= 4, "draft length " + c[1]);
        // Poor agreement everywhere: plain decoding beats any draft.
        assertEquals(0, EarlyExitPolicy.choose(new double[] {0.05, 0.1, 0.2}, exits, 8, 8, 0)[1]);
        // Only the deep exit agrees: it wins despite costing more.
        assertEquals(2, EarlyExitPolicy.choose(new double[] {0.05, 0.1, 0.95}, exits, 8, 8, 0)[0]);
        // The formula: a = 0.5, d = 2, e = 2, 8 layers: 1.75 tokens for 12 layers.
        assertEquals(1.75 / 12, EarlyExitPolicy.value(0.5, 2, 2, 8), 1e-12);
        // A fixed length is kept, the candidate still chosen.
        assertArrayEquals(new int[] {1, 3}, EarlyExitPolicy.choose(new double[] {0.1, 0.9, 0.5}, exits, 8, 8, 3));
    }

    @Test
    void exitLayersOutOfRangeAreRefused() {
        for (int bad : new int[] {0, -1, LAYERS + 1}) {
            var e = assertThrows(IllegalArgumentException.class,
                    () -> new EarlyExitPolicy(fx.target, EarlyExitPolicy.Options.fixed(bad, 3, PolicyFixture.CONTEXT)));
            assertTrue(e.getMessage().contains("exit layer " + bad) && e.getMessage().contains("1.." + LAYERS), e.getMessage());
        }
        assertThrows(IllegalArgumentException.class,
                () -> EarlyExitPolicy.factory(fx.target, new EarlyExitPolicy.Options(new int[] {2, 9}, 4, 0, 16, 32, 512)));
    }
}
