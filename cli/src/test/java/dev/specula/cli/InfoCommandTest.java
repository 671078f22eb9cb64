package dev.specula.cli;

import static org.junit.jupiter.api.Assertions.*;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.specula.model.TestModelMaker;
import dev.specula.model.gguf.GgmlType;
import dev.specula.nativeapi.Specula;
import dev.specula.nativeapi.SpeculaException;
import dev.specula.tokenizer.VocabTrainer;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

class InfoCommandTest {
    @TempDir
    Path dir;

    private record Run(int code, String out, String err) {}

    private static Run run(String... args) {
        StringWriter out = new StringWriter(), err = new StringWriter();
        CommandLine cli = SpeculaCli.commandLine();
        cli.setOut(new PrintWriter(out));
        cli.setErr(new PrintWriter(err));
        int code = cli.execute(args);
        return new Run(code, out.toString(), err.toString());
    }

    private Path model() {
        Path file = dir.resolve("m.gguf");
        new TestModelMaker().arch("llama").dim(64).layers(2).heads(4).kvHeads(2).ff(160).vocab(300).context(1024)
                .type(GgmlType.Q8_0).seed(2).tokenizer(VocabTrainer.ggufMetadata("llama", 300, 2)).write(file);
        return file;
    }

    @Test
    void withoutAModelItDescribesTheLibrary() {
        Run r = run("info");
        assertEquals(0, r.code(), r.err());
        assertTrue(r.out().contains("abi:      " + Specula.abiVersion()), r.out());
        assertTrue(r.out().contains("cpu: device 0"), r.out());
    }

    @Test
    void withAModelItItemizesTheBudgetOnCuda() {
        Path file = model();
        assumeTrue(Specula.backendsCompiled().contains("cuda"), "the library was built without the cuda backend (SPECULA_CUDA=OFF or no nvcc)");
        Run r = run("info", "--model", file.toString(), "--backend", "cuda", "--context", "512", "--batch", "8", "--tree-nodes", "64");
        assertEquals(0, r.code(), r.err());
        String out = r.out();
        assertTrue(out.contains("shape:     llama: vocab 300, embd 64, layers 2"), out);
        for (String item : new String[] {"target weights (device copy)", "target KV caches (8 x 512 positions, f16)", "target forward scratch",
                "verify + recycling scratch (8 x 64 nodes)", "tree logits (8 x 64 nodes x 300 vocab, f32)", "recycling matrix (300 vocab x 8)", "total"}) {
            assertTrue(out.contains(item), item + " missing from:\n" + out);
        }
        // 2 layers x (K, V) x 512 positions x 2 KV heads x 16 dims x f16 x 8 sequences = 1.0 MiB.
        assertTrue(out.matches("(?s).*target KV caches \\(8 x 512 positions, f16\\) +1\\.0 MiB.*"), out);
        boolean cudaHere;
        try {
            cudaHere = Specula.deviceCount("cuda") > 0;
        } catch (SpeculaException e) {
            cudaHere = false;
        }
        if (!cudaHere) {
            assertTrue(out.contains("available: unknown: cuda"), out);
            assertTrue(out.contains("fits:      unknown"), out);
        } else {
            assertTrue(out.contains("available: ") && out.contains("cuda device 0 free memory"), out);
        }
    }

    @Test
    void onCpuWeightsAreMappedAndATightLimitShowsWhatEachPolicyWouldDo() {
        Path file = model();
        Run fits = run("info", "--model", file.toString(), "--context", "256");
        assertEquals(0, fits.code(), fits.err());
        assertTrue(fits.out().contains("target weights (mapped file, not allocated)"), fits.out());
        assertTrue(fits.out().contains("available: ") && fits.out().contains("host available memory"), fits.out());
        assertTrue(fits.out().contains("fits:      yes"), fits.out());

        Run tight = run("info", "--model", file.toString(), "--context", "256", "--batch", "4", "--drafter", "early-exit",
                "--memory-limit", "300K", "--memory-policy", "shrink-batch");
        assertEquals(0, tight.code(), tight.err());
        String out = tight.out();
        assertTrue(out.contains("early-exit KV caches (4 x 17 positions, f16)"), out);
        assertTrue(out.contains("early-exit logits (4 x 18 rows x 300 vocab, f32)"), out);
        assertTrue(out.contains("available: 300.0 KiB (memory limit)"), out);
        assertTrue(out.contains("fits:      no"), out);
        assertTrue(out.contains("refuse:"), out);
        assertTrue(out.contains("shrink-tree:"), out);
        assertTrue(out.contains("shrink-batch (chosen):"), out);
    }

    @Test
    void runRefusesATooSmallLimitWithTheBudgetsMessage() {
        Path file = model();
        Run r = run("run", "--model", file.toString(), "--max-tokens", "4", "--memory-limit", "64K");
        assertEquals(1, r.code(), r.out());
        assertTrue(r.err().startsWith("specula: not enough memory on cpu"), r.err());
        assertTrue(r.err().contains("64.0 KiB (memory limit) is available"), r.err());
        assertFalse(r.err().contains("\tat "), "no stack trace: " + r.err());
    }

    @Test
    void runOnABackendThisMachineCannotUseSaysWhy() {
        Path file = model();
        Run r = run("run", "--model", file.toString(), "--max-tokens", "4", "--backend", "cuda");
        if (r.code() == 0) return; // a machine with a GPU runs it
        assertEquals(1, r.code(), r.out() + r.err());
        assertTrue(r.err().startsWith("specula: "), r.err());
        assertTrue(r.err().contains("cuda") || r.err().contains("CUDA"), r.err());
        assertFalse(r.err().contains("\tat "), "no stack trace: " + r.err());
    }
}
