package dev.specula.policies;

import static org.junit.jupiter.api.Assertions.*;

import dev.specula.engine.DraftTree;
import org.junit.jupiter.api.Test;

class PromptLookupPolicyTest {
    @Test
    void proposesWhatFollowedTheLastOccurrence() {
        int[] h = {5, 6, 7, 8, 9, 1, 5, 6, 7};
        DraftTree t = new PromptLookupPolicy(3, 1, 4, 1).propose(h, h.length, 16);
        assertArrayEquals(new int[] {7, 8, 9, 1, 5}, t.tokens());
        assertArrayEquals(new int[] {-1, 0, 1, 2, 3}, t.parents());
    }

    @Test
    void severalContinuationsShareTheirCommonPrefix() {
        // "3 4" was followed by "5 6" and, later, by "5 7": a tree 4 -> 5 -> {7, 6}.
        int[] h = {3, 4, 5, 6, 0, 3, 4, 5, 7, 0, 3, 4};
        DraftTree t = new PromptLookupPolicy(2, 2, 2, 3).propose(h, h.length, 16);
        assertArrayEquals(new int[] {4, 5, 7, 6}, t.tokens());
        assertArrayEquals(new int[] {-1, 0, 1, 1}, t.parents());
    }

    @Test
    void noMatchOrNoRoomMeansNoSpeculation() {
        int[] h = {1, 2, 3, 4};
        assertEquals(1, new PromptLookupPolicy().propose(h, h.length, 16).size());
        int[] rep = {1, 2, 1, 2, 1, 2};
        assertEquals(1, new PromptLookupPolicy().propose(rep, rep.length, 1).size());
        assertTrue(new PromptLookupPolicy().propose(rep, rep.length, 3).size() <= 3);
    }
}
