package dev.specula.cli;

import static org.junit.jupiter.api.Assertions.*;

import dev.specula.model.TestModelMaker;
import dev.specula.model.gguf.GgmlType;
import dev.specula.tokenizer.VocabTrainer;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Assumptions;
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

    @Test
    void aPromptLongerThanTheContextIsSkippedAndCounted() throws Exception {
        Path model = temp.resolve("m.gguf");
        new TestModelMaker().arch("llama").dim(64).layers(2).heads(4).kvHeads(2).ff(160).vocab(300).context(64)
                .type(GgmlType.Q8_0).seed(3).tokenizer(VocabTrainer.ggufMetadata("llama", 300, 3)).write(model);
        Path prompts = temp.resolve("q.jsonl");
        String tooLong = "public static int max(int a, int b) { return a > b ? a : b; } ".repeat(20);
        Files.writeString(prompts, "{\"question_id\": 1, \"category\": \"code\", \"turns\": [\"int a = 1;\"]}\n"
                + "{\"question_id\": 2, \"category\": \"code\", \"turns\": [\"" + tooLong + "\"]}\n"
                + "{\"question_id\": 3, \"category\": \"code\", \"turns\": [\"for (int i = 0;\"]}\n");
        StringWriter out = new StringWriter(), err = new StringWriter();
        var cli = SpeculaCli.commandLine();
        cli.setOut(new PrintWriter(out));
        cli.setErr(new PrintWriter(err));
        int code = cli.execute("bench", "--model", model.toString(), "--prompts", prompts.toString(), "--drafters", "pld",
                "--max-tokens", "4", "--threads", "1", "--rounds", "2");
        assertEquals(0, code, err.toString());
        assertTrue(out.toString().startsWith("Model m.gguf, 2 questions (1 skipped: longer than the 64-token context)"), out.toString());
        assertTrue(out.toString().contains("median over 2 paired rounds"), out.toString());
        assertTrue(out.toString().contains("| pld | all |"), out.toString());
        assertTrue(err.toString().contains("warning: skipping question 2: its prompt's "), err.toString());
        assertTrue(err.toString().contains("tokens do not fit the 64-token context"), err.toString());
        assertFalse(err.toString().contains("\tat "), err.toString());
        // Standard error is a pipe under the test runner: progress comes as plain lines.
        Assumptions.assumeFalse(Progress.standardErrorIsTerminal());
        assertFalse(err.toString().contains("\r"), err.toString());
        assertTrue(err.toString().contains("1/2 rounds (1 skipped)\n2/2 rounds (1 skipped)\n"), err.toString());
    }

    @Test
    void noPromptThatFitsIsAnError() throws Exception {
        Path model = temp.resolve("m.gguf");
        new TestModelMaker().arch("llama").dim(64).layers(2).heads(4).kvHeads(2).ff(160).vocab(300).context(16)
                .type(GgmlType.Q8_0).seed(3).tokenizer(VocabTrainer.ggufMetadata("llama", 300, 3)).write(model);
        Path prompts = temp.resolve("q.jsonl");
        Files.writeString(prompts, "{\"turns\": [\"" + "int x = 1; ".repeat(20) + "\"]}\n");
        StringWriter out = new StringWriter(), err = new StringWriter();
        var cli = SpeculaCli.commandLine();
        cli.setOut(new PrintWriter(out));
        cli.setErr(new PrintWriter(err));
        assertEquals(1, cli.execute("bench", "--model", model.toString(), "--prompts", prompts.toString(), "--max-tokens", "2"));
        assertTrue(err.toString().strip().endsWith("specula: none of the 1 prompts fits the model's context of 16 tokens"), err.toString());
    }
}
