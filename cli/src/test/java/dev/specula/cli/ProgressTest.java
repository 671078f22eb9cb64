package dev.specula.cli;

import static org.junit.jupiter.api.Assertions.*;

import java.io.PrintWriter;
import java.io.StringWriter;
import org.junit.jupiter.api.Test;

class ProgressTest {
    private static String show(boolean terminal, int total) {
        StringWriter text = new StringWriter();
        Progress p = new Progress(new PrintWriter(text), terminal, "questions", total);
        for (int i = 1; i <= total; i++) p.update(i, i > 2 ? "1 skipped" : "");
        p.finish();
        return text.toString();
    }

    @Test
    void elsewhereItIsAPlainLineAtEveryTenthAndTheEnd() {
        String log = show(false, 40);
        assertFalse(log.contains("\r"), log);
        assertEquals(10, log.lines().count(), log);
        assertTrue(log.startsWith("4/40 questions (1 skipped)\n8/40 questions (1 skipped)\n"), log);
        assertTrue(log.endsWith("40/40 questions (1 skipped)\n"), log);
        assertEquals("1/2 questions\n2/2 questions\n", show(false, 2));
    }

    @Test
    void onATerminalItIsOneLineRewrittenInPlace() {
        assertEquals("\r1/3 questions\r2/3 questions\r3/3 questions (1 skipped)\n", show(true, 3));
    }
}
