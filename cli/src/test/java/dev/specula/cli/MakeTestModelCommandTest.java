package dev.specula.cli;

import static org.junit.jupiter.api.Assertions.*;

import dev.specula.model.ModelConfig;
import dev.specula.model.ModelFile;
import dev.specula.model.gguf.GgmlType;
import dev.specula.model.gguf.GgufFile;
import dev.specula.nativeapi.Arch;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

class MakeTestModelCommandTest {
    @TempDir
    Path dir;

    private record Run(int code, String out, String err) {}

    private static Run run(String... args) {
        StringWriter out = new StringWriter(), err = new StringWriter();
        CommandLine cli = new CommandLine(new SpeculaCli());
        cli.setOut(new PrintWriter(out));
        cli.setErr(new PrintWriter(err));
        int code = cli.execute(args);
        return new Run(code, out.toString(), err.toString());
    }

    @Test
    void helpListsEveryOption() {
        Run r = run("make-test-model", "--help");
        assertEquals(0, r.code());
        for (String option : new String[] {"--out", "--arch", "--dim", "--layers", "--heads", "--kv-heads", "--ff", "--vocab",
                "--context", "--type", "--tied", "--untied", "--seed", "--rope-theta", "--tokenizer", "--head-dim", "--sliding-window", "--hf-out"}) {
            assertTrue(r.out().contains(option), option + " missing from:\n" + r.out());
        }
        assertTrue(r.out().contains("Q8_0"), r.out());
        assertTrue(run("--help").out().contains("make-test-model"));
    }

    @Test
    void writesTheModelItIsAskedFor() {
        Path file = dir.resolve("cli.gguf");
        Run r = run("make-test-model", "--out", file.toString(), "--arch", "qwen2", "--dim", "64", "--layers", "3",
                "--heads", "4", "--kv-heads", "1", "--ff", "160", "--vocab", "300", "--context", "512", "--type", "q8_0",
                "--tied", "--seed", "9", "--rope-theta", "1000000", "--tokenizer", "llama");
        assertEquals(0, r.code(), r.err());
        assertTrue(r.out().contains("wrote " + file), r.out());
        try (GgufFile g = GgufFile.open(file)) {
            ModelConfig c = ModelConfig.fromGguf(g);
            assertEquals(Arch.QWEN2, c.arch());
            assertEquals(3, c.nLayer());
            assertEquals(1, c.nHeadKv());
            assertEquals(160, c.nFf());
            assertEquals(300, c.nVocab());
            assertEquals(512, c.nCtxTrain());
            assertEquals(1e6f, c.ropeTheta());
            assertTrue(c.tiedEmbeddings());
            assertEquals(GgmlType.Q8_0, g.tensor("blk.2.attn_q.weight").type());
            assertEquals(300, g.getStringList("tokenizer.ggml.tokens").size());
        }
    }

    @Test
    void writesLlamaCppMixes() {
        Path file = dir.resolve("q4km.gguf");
        Run r = run("make-test-model", "--out", file.toString(), "--dim", "256", "--ff", "512", "--layers", "8", "--vocab", "300",
                "--type", "q4_k_m");
        assertEquals(0, r.code(), r.err());
        assertTrue(r.out().contains("Q4_K_M"), r.out());
        try (GgufFile g = GgufFile.open(file)) {
            assertEquals(15, g.getInt("general.file_type"));
            assertEquals(GgmlType.Q6_K, g.tensor("output.weight").type());
            assertEquals(GgmlType.Q6_K, g.tensor("blk.3.ffn_down.weight").type());
            assertEquals(GgmlType.Q4_K, g.tensor("blk.4.ffn_down.weight").type());
        }
        Path pure = dir.resolve("q2k.gguf");
        r = run("make-test-model", "--out", pure.toString(), "--dim", "256", "--ff", "512", "--vocab", "300", "--type", "Q2_K", "--pure");
        assertEquals(0, r.code(), r.err());
        try (GgufFile g = GgufFile.open(pure)) {
            assertEquals(10, g.getInt("general.file_type"));
            for (var t : g.tensors()) if (t.nDims() == 2) assertEquals(GgmlType.Q2_K, t.type(), t.name());
        }
    }

    @Test
    void writesQwen3AndGemma3() {
        Path qwen3 = dir.resolve("qwen3.gguf");
        Run r = run("make-test-model", "--out", qwen3.toString(), "--arch", "qwen3", "--head-dim", "48", "--vocab", "300");
        assertEquals(0, r.code(), r.err());
        try (GgufFile g = GgufFile.open(qwen3)) {
            ModelConfig c = ModelConfig.fromGguf(g);
            assertEquals(Arch.QWEN3, c.arch());
            assertEquals(48, c.headDim());
            assertEquals(48, g.tensor("blk.1.attn_k_norm.weight").dim(0));
            assertEquals(0, c.slidingWindow());
        }
        Path gemma3 = dir.resolve("gemma3.gguf");
        r = run("make-test-model", "--out", gemma3.toString(), "--arch", "gemma3", "--layers", "6", "--sliding-window", "16",
                "--vocab", "300", "--tied");
        assertEquals(0, r.code(), r.err());
        assertTrue(r.out().contains("sliding window 16 (every 6th layer global)"), r.out());
        try (GgufFile g = GgufFile.open(gemma3)) {
            ModelConfig c = ModelConfig.fromGguf(g);
            assertEquals(Arch.GEMMA3, c.arch());
            assertEquals(new ModelConfig.LayerAttention(16, 6, 10000f, 0f), c.layerAttention());
            assertTrue(g.hasTensor("blk.5.post_ffw_norm.weight"));
            assertTrue(g.hasTensor("blk.5.post_attention_norm.weight"));
        }
        r = run("make-test-model", "--out", dir.resolve("bad.gguf").toString(), "--arch", "llama", "--head-dim", "32");
        assertEquals(2, r.code());
        assertTrue(r.err().contains("llama needs head-dim = dim / heads"), r.err());
    }

    /** --hf-out: the same model as a Hugging Face folder (its logits and tokens agree with the GGUF's: ArchitecturesTest). */
    @Test
    void writesAHuggingFaceFolderBesideTheGguf() throws Exception {
        for (String arch : new String[] {"llama", "qwen3", "gemma3"}) {
            Path gguf = dir.resolve(arch + "-hf.gguf"), hf = dir.resolve(arch + "-hf");
            Run r = run("make-test-model", "--out", gguf.toString(), "--arch", arch, "--layers", "6", "--vocab", "300", "--type", "Q8_0",
                    "--hf-out", hf.toString());
            assertEquals(0, r.code(), r.err());
            assertTrue(r.out().contains("wrote " + hf + " (config.json, model.safetensors, tokenizer.json, tokenizer_config.json)"), r.out());
            try (GgufFile g = GgufFile.open(gguf); ModelFile folder = ModelFile.open(hf)) {
                ModelConfig c = ModelConfig.fromGguf(g);
                // llama's GGUF rotates interleaved pairs, its Hugging Face folder halves (HuggingFaceExport reorders q/k)
                assertEquals(c.toString().replace("ropeStyle=NORM", "ropeStyle=NEOX"), folder.config().toString(), arch);
            }
            assertTrue(java.nio.file.Files.isRegularFile(hf.resolve("tokenizer.json")), arch);
        }
    }

    @Test
    void badSettingsAreUsageErrors() {
        Path file = dir.resolve("bad.gguf");
        Run r = run("make-test-model", "--out", file.toString(), "--type", "Q5_K");
        assertEquals(2, r.code());
        assertTrue(r.err().contains("Q5_K needs dim and ff to be multiples of 256 (got 64, 192)"), r.err());
        r = run("make-test-model", "--out", file.toString(), "--type", "f8");
        assertEquals(2, r.code());
        assertTrue(r.err().contains("invalid --type f8: use F32, F16, Q4_0, Q4_1, Q8_0"), r.err());
        r = run("make-test-model", "--out", file.toString(), "--dim", "48", "--type", "Q8_0", "--pure");
        assertEquals(2, r.code());
        assertTrue(r.err().contains("Q8_0 needs dim and ff to be multiples of 32"), r.err());
        assertFalse(file.toFile().exists());
    }
}
