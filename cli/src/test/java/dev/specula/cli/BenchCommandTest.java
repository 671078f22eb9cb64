package dev.specula.cli;

import static org.junit.jupiter.api.Assertions.*;

import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class BenchCommandTest {
    @TempDir
    Path temp;

    @Test
    void readsSpecBenchQuestionsAndNamesBadLines() throws Exception {
        Path f = temp.resolve("q.jsonl");
        Files.writeString(f, "{\"question_id\": 7, \"category\": \"code\", \"turns\": [\"int a\", \"second\"]}\n\n"
                + "{\"turns\": [\"only\"]}\n");
        var qs = BenchCommand.readQuestions(f);
        assertEquals(2, qs.size());
        assertEquals(new BenchCommand.Question("7", "code", "int a"), qs.get(0));
        assertEquals("default", qs.get(1).category());
        Files.writeString(f, "{\"question_id\": 1, \"turns\": []}\n");
        var e = assertThrows(IllegalArgumentException.class, () -> BenchCommand.readQuestions(f));
        assertTrue(e.getMessage().contains("q.jsonl:1"), e.getMessage());
        Files.writeString(f, "not json\n");
        assertThrows(IllegalArgumentException.class, () -> BenchCommand.readQuestions(f));
    }
}
