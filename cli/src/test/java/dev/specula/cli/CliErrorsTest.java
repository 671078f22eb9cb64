package dev.specula.cli;

import static org.junit.jupiter.api.Assertions.*;

import dev.specula.model.TestModelMaker;
import dev.specula.model.gguf.GgmlType;
import dev.specula.nativeapi.Specula;
import dev.specula.nativeapi.SpeculaException;
import dev.specula.tokenizer.VocabTrainer;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;
import picocli.CommandLine.Command;

/** Every mistake a user can make on the command line is one line, {@code specula: <message>}, and an exit code. */
class CliErrorsTest {
    @TempDir
    Path dir;

    private record Run(int code, String out, String err) {
        /** The error output is exactly one line starting "specula: " and containing each of the words. */
        String oneLine(String... words) {
            assertFalse(err.contains("\tat "), "no stack trace: " + err);
            assertEquals(1, err.strip().lines().count(), "one line: " + err);
            assertTrue(err.startsWith("specula: "), err);
            for (String w : words) assertTrue(err.contains(w), "'" + w + "' missing from: " + err);
            return err.strip();
        }
    }

    private static Run run(CommandLine cli, String... args) {
        StringWriter out = new StringWriter(), err = new StringWriter();
        cli.setOut(new PrintWriter(out));
        cli.setErr(new PrintWriter(err));
        int code = cli.execute(args);
        return new Run(code, out.toString(), err.toString());
    }

    private static Run run(String... args) {
        return run(SpeculaCli.commandLine(), args);
    }

    private Path model() {
        Path file = dir.resolve("m.gguf");
        new TestModelMaker().arch("llama").dim(64).layers(2).heads(4).kvHeads(2).ff(160).vocab(300).context(1024)
                .type(GgmlType.Q8_0).seed(2).tokenizer(VocabTrainer.ggufMetadata("llama", 300, 2)).write(file);
        return file;
    }

    @Test
    void aMissingModelFileIsNamed() {
        Path missing = dir.resolve("absent.gguf");
        Run r = run("run", "--model", missing.toString(), "--max-tokens", "4");
        assertEquals(1, r.code());
        r.oneLine(missing.toString(), "no such file");
    }

    @Test
    void aFileThatIsNotAModelIsNamed() throws Exception {
        Path text = Files.writeString(dir.resolve("notes.txt"), "hello, not a model");
        Run r = run("run", "--model", text.toString(), "--max-tokens", "4");
        assertEquals(1, r.code());
        r.oneLine(text.toString(), "neither a GGUF file nor a safetensors checkpoint");
    }

    @Test
    void badOptionValuesAreUsageErrorsNamingTheOptionAndTheValue() {
        assertEquals(2, run("run", "--max-tokens", "-3").code());
        run("run", "--max-tokens", "-3").oneLine("--max-tokens", "'-3'", "0 or more", "specula run --help");
        Run drafter = run("run", "--drafter", "bogus");
        assertEquals(2, drafter.code());
        drafter.oneLine("--drafter", "'bogus'", "pld", "recycling", "early-exit");
        Run temperature = run("run", "--temperature", "-1");
        assertEquals(2, temperature.code());
        temperature.oneLine("--temperature", "'-1'");
        Run verify = run("run", "--verify", "nonsense");
        assertEquals(2, verify.code());
        verify.oneLine("--verify", "'nonsense'", "greedy", "sample");
        Run drafters = run("bench", "--prompts", "q.jsonl", "--drafters", "pld,nope");
        assertEquals(2, drafters.code());
        drafters.oneLine("--drafters", "nope");
        Run size = run("info", "--memory-limit", "lots");
        assertEquals(2, size.code());
        size.oneLine("--memory-limit", "'lots'");
        Run threads = run("run", "--threads", "5000");
        assertEquals(2, threads.code());
        threads.oneLine("--threads", "'5000'", "from 0 to 1024");
        Run tree = run("run", "--tree-nodes", "100000");
        assertEquals(2, tree.code());
        tree.oneLine("--tree-nodes", "from 1 to 128");
        Run notANumber = run("run", "--max-tokens", "many");
        assertEquals(2, notANumber.code());
        notANumber.oneLine("--max-tokens", "many");
    }

    @Test
    void optionsThatContradictEachOtherAreUsageErrors() {
        Run greedy = run("run", "--temperature", "0.7");
        assertEquals(2, greedy.code());
        greedy.oneLine("--verify greedy", "--temperature 0", "--verify sample");
        Run sample = run("run", "--verify", "sample");
        assertEquals(2, sample.code());
        sample.oneLine("--verify sample", "--temperature");
    }

    @Test
    void unknownOptionsAreUsageErrorsWithASuggestion() {
        Run r = run("run", "--max-tokenz", "3");
        assertEquals(2, r.code());
        r.oneLine("--max-tokenz", "did you mean --max-tokens?");
    }

    @Test
    void anUnknownCommandListsTheCommands() {
        Run r = run("rnu", "--max-tokens", "3");
        assertEquals(2, r.code());
        r.oneLine("unknown command 'rnu'", "run, chat, bench", "specula --help");
    }

    @Test
    void aMissingPromptsFileIsNamed() {
        Path missing = dir.resolve("questions.jsonl");
        Run r = run("bench", "--model", model().toString(), "--prompts", missing.toString());
        assertEquals(1, r.code());
        r.oneLine(missing.toString(), "no such file");
    }

    @Test
    void aModelThatDoesNotFitIsRefusedWithTheBudget() {
        Run r = run("run", "--model", model().toString(), "--max-tokens", "4", "--memory-limit", "1M", "--context", "1024");
        // 1 MiB can hold the tiny test model's weights but not its forward scratch and caches.
        if (r.code() == 0) fail("fit in 1 MiB: " + r.out());
        assertEquals(1, r.code());
        r.oneLine("not enough memory on cpu", "1.0 MiB (memory limit)");
    }

    @Test
    void aBackendThisMachineLacksSaysSo() {
        boolean cudaHere;
        try {
            cudaHere = Specula.backendsCompiled().contains("cuda") && Specula.deviceCount("cuda") > 0;
        } catch (SpeculaException e) {
            cudaHere = false;
        }
        if (cudaHere) return; // a machine with a GPU runs it
        Run r = run("run", "--model", model().toString(), "--max-tokens", "4", "--backend", "cuda");
        assertEquals(1, r.code(), r.out() + r.err());
        r.oneLine("cuda");
        Run unknown = run("run", "--backend", "metal");
        assertEquals(2, unknown.code());
        unknown.oneLine("--backend", "'metal'", "cpu, cuda");
    }

    @Test
    void aDeviceThisMachineLacksSaysSo() {
        Run r = run("run", "--model", model().toString(), "--max-tokens", "4", "--device", "3");
        assertEquals(1, r.code());
        r.oneLine("there is no cpu device 3 here");
    }

    @Test
    void debugShowsTheTraceBeforeOrAfterTheCommandName() {
        Path missing = dir.resolve("absent.gguf");
        for (String[] args : new String[][] {{"--debug", "run", "--model", missing.toString()}, {"run", "--debug", "--model", missing.toString()}}) {
            Run r = run(args);
            assertEquals(1, r.code());
            assertTrue(r.err().startsWith("specula: " + missing + ": cannot read the file (no such file)"), r.err());
            assertTrue(r.err().contains("\tat dev.specula.model.ModelFile"), r.err());
        }
        Run usage = run("run", "--debug", "--max-tokens", "-3");
        assertEquals(2, usage.code());
        assertTrue(usage.err().contains("\tat "), usage.err());
    }

    @Command(name = "boom")
    static final class Boom implements Callable<Integer> {
        @CommandLine.Option(names = "--what")
        String what = "npe";

        @Override
        public Integer call() {
            String nothing = null;
            if (what.equals("state")) throw new IllegalStateException("the tree lost a node");
            return nothing.length();
        }
    }

    @Test
    void aBugSaysSoPlainlyWithTheTrace() {
        for (String what : new String[] {"npe", "state"}) {
            CommandLine cli = SpeculaCli.commandLine();
            cli.addSubcommand("boom", new Boom());
            Run r = run(cli, "boom", "--what", what);
            assertEquals(1, r.code());
            String first = r.err().lines().findFirst().orElseThrow();
            assertTrue(first.startsWith("specula: internal error: "), first);
            assertTrue(first.contains(what.equals("npe") ? "NullPointerException" : "IllegalStateException: the tree lost a node"), first);
            assertTrue(first.contains("this is a bug"), first);
            assertTrue(r.err().contains("\tat dev.specula.cli.CliErrorsTest$Boom.call"), r.err());
        }
    }

    @Test
    void theClassificationIsByKind() {
        assertTrue(CliErrors.isUsersProblem(new IllegalArgumentException("bad prompt")));
        assertTrue(CliErrors.isUsersProblem(new java.nio.file.NoSuchFileException("x")));
        assertTrue(CliErrors.isUsersProblem(new SpeculaException(dev.specula.nativeapi.Status.BACKEND_UNAVAILABLE.code(), "no GPU")));
        assertFalse(CliErrors.isUsersProblem(new SpeculaException(dev.specula.nativeapi.Status.INVALID_HANDLE.code(), "closed")));
        assertFalse(CliErrors.isUsersProblem(new IllegalStateException("invariant")));
        assertFalse(CliErrors.isUsersProblem(new NullPointerException()));
        assertFalse(CliErrors.isUsersProblem(new AssertionError()));
    }
}
