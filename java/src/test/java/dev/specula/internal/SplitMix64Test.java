package dev.specula.internal;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

class SplitMix64Test {
    @Test
    void nextIsTheFirstNumberOfTheJdksSplittableRandom() {
        SplittableRandom seeds = new SplittableRandom(1);
        for (int i = 0; i < 1000; i++) {
            long s = seeds.nextLong();
            assertEquals(new SplittableRandom(s).nextLong(), SplitMix64.next(s), "seed " + s);
        }
    }
}
