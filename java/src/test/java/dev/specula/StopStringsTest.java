package dev.specula;

import static org.junit.jupiter.api.Assertions.*;

import java.util.List;
import org.junit.jupiter.api.Test;

class StopStringsTest {
    @Test
    void holdsBackAPossibleStartAndCutsAtTheStop() {
        StopStrings s = new StopStrings(List.of("END", "\n\n"));
        assertEquals("abc ", s.accept("abc E"));
        assertEquals("", s.accept("N"));
        assertEquals("ENx ", s.accept("x E"), "ENx is no stop: release it");
        assertEquals("", s.accept("ND tail"));
        assertTrue(s.isStopped());
        assertEquals("", s.accept("more"));
        assertEquals("", s.flush());
    }

    @Test
    void theEarliestStopWinsAndFlushReleasesTheRest() {
        StopStrings s = new StopStrings(List.of("b", "ab"));
        assertEquals("x", s.accept("xab"));
        StopStrings t = new StopStrings(List.of("zz"));
        assertEquals("q", t.accept("qz"));
        assertEquals("z", t.flush());
        assertThrows(IllegalArgumentException.class, () -> new StopStrings(List.of("")));
    }
}
