package dev.specula.policies;

import static org.junit.jupiter.api.Assertions.*;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A drafter's cache kept in step with a sequence gives the same predictions as a cache filled from scratch
 * with that sequence, after drafts the target rejected (truncation) and tokens it lacks (catch-up). Losslessness
 * tests cannot see this: a stale draft cache only makes worse drafts. Both ways of reading the drafter's
 * distribution (device summaries, host rows) are checked.
 */
class DraftCacheTest {
    @TempDir
    static Path temp;
    static PolicyFixture fx;

    @BeforeAll
    static void setUp() {
        fx = new PolicyFixture(temp, 4, 0);
    }

    @AfterAll
    static void tearDown() {
        fx.close();
    }

    @Test
    void aCacheKeptInStepPredictsLikeAFreshOne() {
        for (boolean onDevice : new boolean[] {false, true}) for (int exit : new int[] {0, 2}) {
            try (DraftCache kept = new DraftCache(fx.target, exit, 128, 8, PolicyFixture.VOCAB, onDevice)) {
                int[] h = {1, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120, 130};
                kept.advanceTo(h, 5);
                kept.append(200); // drafts 200, 201 after h[0..5)
                kept.append(201);
                assertEquals(7, kept.length());
                // The target accepted 200, rejected 201 and chose 60 instead; then 70, 80 became the root.
                int[] next = {1, 20, 30, 40, 50, 200, 60, 70, 80};
                TopTokens got = kept.advanceTo(next, next.length);
                assertEquals(next.length, kept.length());
                assertClose(fresh(exit, next), got, "exit " + exit + " after a rejected draft");
                // Nothing new: the root is forwarded again and predicts the same.
                assertClose(fresh(exit, next), kept.advanceTo(next, next.length), "exit " + exit + " unchanged");
                // A long catch-up (more than one chunk of logits rows).
                assertClose(fresh(exit, h), kept.advanceTo(h, h.length), "exit " + exit + " after a long catch-up");
            }
        }
    }

    @Test
    void catchUpScoresEveryNewTokenWithFullContext() {
        for (boolean onDevice : new boolean[] {false, true}) catchUpScores(onDevice);
    }

    private static void catchUpScores(boolean onDevice) {
        int[] h = new int[40];
        for (int i = 0; i < h.length; i++) h[i] = 3 + (i * 37) % 300;
        try (DraftCache c = new DraftCache(fx.target, 2, 128, 8, PolicyFixture.VOCAB, onDevice)) {
            c.advanceTo(h, 10);
            c.append(299); // a draft the target did not take: it must be dropped
            List<Integer> seen = new ArrayList<>();
            List<TopTokens> rows = new ArrayList<>();
            c.catchUp(h, 30, 31, 20, (next, prediction) -> {
                seen.add(next);
                rows.add(prediction);
            });
            assertEquals(30, c.length());
            // Predictions of h[20..30]: history[i] predicts history[i + 1], for i = 19..29.
            List<Integer> want = new ArrayList<>();
            for (int i = 20; i <= 30; i++) want.add(i);
            assertEquals(want, seen);
            for (int k = 0; k < seen.size(); k++) {
                int next = seen.get(k);
                assertClose(fresh(2, java.util.Arrays.copyOf(h, next)), rows.get(k), "prediction of token " + next);
            }
        }
    }

    /** From a fresh cache, read on the host: the reference. */
    private static TopTokens fresh(int exit, int[] history) {
        try (DraftCache c = new DraftCache(fx.target, exit, 128, 8, PolicyFixture.VOCAB, false)) {
            return c.advanceTo(history, history.length);
        }
    }

    private static void assertClose(TopTokens want, TopTokens got, String what) {
        assertEquals(want.first(), got.first(), what + ": first");
        assertEquals(want.second(), got.second(), what + ": second");
        assertEquals(want.vocab(), got.vocab(), what + ": vocab");
        assertEquals(want.p1(), got.p1(), 1e-4, what + ": p1");
        assertEquals(want.p2(), got.p2(), 1e-4, what + ": p2");
        assertEquals(want.entropy(), got.entropy(), 1e-4 * Math.max(1, want.entropy()), what + ": entropy");
    }
}
