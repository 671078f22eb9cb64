package dev.specula.policies;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import dev.specula.policies.DraftHeadsPolicy.Node;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/** Which frontier nodes EAGLE's dynamic tree spends a row of the layer on (EagleDraftPolicy.worthExpanding). */
class EagleExpansionTest {
    private static List<Node> nodes(double... scores) {
        List<Node> out = new ArrayList<>();
        for (int i = 0; i < scores.length; i++) out.add(new Node(i, -1, 1, scores[i]));
        return out;
    }

    @Test
    void aNodeIsExpandedOnlyWhileFewerThanTheBudgetAreMoreLikely() {
        List<Node> n = nodes(0.5, 0.3, 0.2, 0.1, 0.1, 0.05);
        // budget 3: 0.5, 0.3, 0.2 fill it; a node of 0.1 has 3 more likely ones, so its children could not be picked
        assertEquals(List.of(0, 1, 2), EagleDraftPolicy.worthExpanding(n, List.of(0, 1, 2, 3, 4, 5), 3, 0));
        // ties count as not more likely: both 0.1 nodes stay with a budget of 4
        assertEquals(List.of(0, 1, 2, 3, 4), EagleDraftPolicy.worthExpanding(n, List.of(0, 1, 2, 3, 4, 5), 4, 0));
        // the frontier's order is kept
        assertEquals(List.of(2, 0), EagleDraftPolicy.worthExpanding(n, List.of(2, 5, 0), 3, 0));
    }

    @Test
    void nodesBelowTheFloorAreNotExpanded() {
        List<Node> n = nodes(0.5, 0.03, 0.02, 0.019);
        assertEquals(List.of(0, 1, 2), EagleDraftPolicy.worthExpanding(n, List.of(0, 1, 2, 3), 24, EagleDraftPolicy.MIN_EXPAND_SCORE));
        assertEquals(List.of(0, 1, 2, 3), EagleDraftPolicy.worthExpanding(n, List.of(0, 1, 2, 3), 24, 0));
        assertEquals(List.of(), EagleDraftPolicy.worthExpanding(n, List.of(1, 2, 3), 24, 0.6));
    }

    @Test
    void aFloorOutsideZeroToOneIsRefused() {
        for (double bad : new double[] {-0.1, 1, Double.NaN})
            assertThrows(IllegalArgumentException.class, () -> new EagleDraftPolicy("eagle", null, 16, bad));
    }
}
