package dev.specula.cli;

import static org.junit.jupiter.api.Assertions.*;

import org.junit.jupiter.api.Test;

class PairedRatiosTest {
    @Test
    void theMedianOfTheRoundsRatiosIgnoresOnePreemptedRound() {
        PairedRatios r = new PairedRatios();
        r.add(1.00, 1.00);
        r.add(2.00, 1.90);
        r.add(0.50, 0.49);
        r.add(1.00, 3.00); // the drafter's run was preempted
        r.add(1.20, 1.18);
        assertEquals(5, r.size());
        assertEquals(1.2 / 1.18, r.median(), 1e-12);
        double[] ci = r.interval95();
        assertTrue(ci[0] <= r.median() && r.median() <= ci[1], ci[0] + " " + ci[1]);
        assertTrue(ci[1] <= 2.0 / 1.9 + 1e-12, "the interval never leaves the rounds' range: " + ci[1]);
        assertEquals(ci[0], r.interval95()[0], "the same rounds give the same interval");
    }

    @Test
    void moreRoundsOfTheSameScatterGiveANarrowerInterval() {
        PairedRatios few = new PairedRatios(), many = new PairedRatios();
        double[] scatter = {0.94, 1.06, 0.98, 1.02, 1.00, 0.96, 1.04, 0.99};
        for (int i = 0; i < 4; i++) few.add(scatter[i], 1.0);
        for (int round = 0; round < 8; round++) for (double s : scatter) many.add(s, 1.0);
        double[] a = few.interval95(), b = many.interval95();
        assertTrue(b[1] - b[0] < a[1] - a[0], (a[1] - a[0]) + " against " + (b[1] - b[0]));
        assertTrue(b[0] > 0.97 && b[1] < 1.03, b[0] + " " + b[1]);
    }

    @Test
    void roundsWithNothingMeasuredAreLeftOut() {
        PairedRatios r = new PairedRatios();
        r.add(0, 1);
        r.add(1, 0);
        r.add(Double.NaN, 1);
        assertEquals(0, r.size());
        assertTrue(Double.isNaN(r.median()));
        assertTrue(Double.isNaN(r.interval95()[0]));
        r.add(3, 2);
        assertEquals(1.5, r.median());
        assertArrayEquals(new double[] {1.5, 1.5}, r.interval95());
        assertEquals("1.500x [1.500, 1.500]", r.describe());
    }

    @Test
    void theProcessCpuTimeOnlyGrows() {
        long a = PairedRatios.processCpuNanos();
        var threads = java.lang.management.ManagementFactory.getThreadMXBean();
        long spin = threads.getCurrentThreadCpuTime();
        double x = 0;
        while (threads.getCurrentThreadCpuTime() - spin < 50_000_000L) x += Math.sqrt(x + 1); // 50 ms of this thread's CPU
        assertTrue(x > 0);
        assertTrue(PairedRatios.processCpuNanos() > a);
    }
}
