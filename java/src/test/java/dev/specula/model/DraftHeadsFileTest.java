package dev.specula.model;

import static org.junit.jupiter.api.Assertions.*;

import dev.specula.model.DraftHeadsFile.Layout;
import dev.specula.nativeapi.NativeHeads;
import dev.specula.nativeapi.NativeHeads.Role;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.function.Consumer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The heads loader on random-weight files in each published layout, and every way a file can fail to fit the target. */
class DraftHeadsFileTest {
    static final int E = 16, V = 40;

    @TempDir
    Path temp;
    int dirs;

    private Path write(HeadsFixture f) {
        return f.write(temp.resolve("heads" + dirs++));
    }

    private static DraftHeadsFile open(Path p, Layout layout) {
        return DraftHeadsFile.open(p, layout, E, V);
    }

    /** The file fails to open, with a message naming the file and each of needles. */
    private void refused(HeadsFixture f, Layout layout, String fileName, String... needles) {
        Path dir = write(f);
        ModelFormatException e = assertThrows(ModelFormatException.class, () -> open(dir, layout).close());
        assertTrue(e.getMessage().startsWith(dir.resolve(fileName).toString()), e.getMessage());
        for (String n : needles) assertTrue(e.getMessage().contains(n), "\"" + e.getMessage() + "\" lacks \"" + n + "\"");
    }

    private void refusedTensor(HeadsFixture f, Layout layout, String... needles) {
        refused(f, layout, layout.fileName(), needles);
    }

    @Test
    void medusaLoadsWithAndWithoutItsProjection() {
        for (boolean proj : new boolean[] {true, false})
            for (String dtype : new String[] {"F32", "F16", "BF16"}) {
                try (DraftHeadsFile h = open(write(HeadsFixture.medusa(3, 2, E, V, proj, dtype, 1)), Layout.MEDUSA)) {
                    assertEquals(new NativeHeads.Config(3, 2, false, false), h.config());
                    assertEquals(3 * 2 * 2 + (proj ? 3 : 0), h.weights().size());
                    assertEquals(proj, h.weights().stream().anyMatch(w -> w.role() == Role.PROJ));
                }
            }
        // the folder, the file itself, or a folder with a medusa/ subfolder
        Path dir = write(HeadsFixture.medusa(2, 1, E, V, true, "F32", 2));
        try (DraftHeadsFile h = open(dir.resolve("medusa_lm_head.safetensors"), Layout.MEDUSA)) {
            assertEquals(2, h.config().nHeads());
        }
        HeadsFixture.medusa(1, 0, E, V, true, "F32", 3).write(temp.resolve("both/medusa"));
        try (DraftHeadsFile h = open(temp.resolve("both"), Layout.MEDUSA)) {
            assertEquals(new NativeHeads.Config(1, 0, false, false), h.config());
        }
    }

    @Test
    void hydraLoadsGroundedAndUngrounded() {
        try (DraftHeadsFile h = open(write(HeadsFixture.hydra(3, 2, E, V, false, "F16", 4)), Layout.HYDRA)) {
            assertEquals(new NativeHeads.Config(3, 2, true, true), h.config());
            // per head: block 0 with res_connection (4 tensors), block 1 (2), the projection's bias
            assertEquals(3 * (4 + 2 + 1), h.weights().size());
        }
        try (DraftHeadsFile h = open(write(HeadsFixture.hydra(2, 1, E, V, true, "F32", 5)), Layout.HYDRA)) {
            assertEquals(2 * 6, h.weights().size());
        }
        // ungrounded heads read h alone: no res_connection
        HeadsFixture f = HeadsFixture.hydra(2, 1, E, V, true, "F32", 6);
        f.config.addProperty("grounded_heads", false);
        for (int h = 0; h < 2; h++) {
            f.tensors.remove("hydra_mlp." + h + ".0.res_connection.weight").remove("hydra_mlp." + h + ".0.res_connection.bias");
            f.put("hydra_mlp." + h + ".0.linear.weight", "F32", E, E);
        }
        try (DraftHeadsFile h = open(write(f), Layout.HYDRA)) {
            assertEquals(new NativeHeads.Config(2, 1, false, true), h.config());
        }
    }

    /** Replaces one tensor of a good file with a wrongly shaped one. */
    private static HeadsFixture medusaWith(Consumer<HeadsFixture> change) {
        HeadsFixture f = HeadsFixture.medusa(2, 1, E, V, true, "F32", 7);
        change.accept(f);
        return f;
    }

    private static HeadsFixture hydraWith(Consumer<HeadsFixture> change) {
        HeadsFixture f = HeadsFixture.hydra(2, 2, E, V, true, "F32", 8);
        change.accept(f);
        return f;
    }

    @Test
    void medusaBadShapesNameTheTensor() {
        refusedTensor(medusaWith(f -> f.put("1.0.linear.weight", "F32", E, E + 1)), Layout.MEDUSA, "tensor 1.0.linear.weight", "[16, 17]", "expected [16, 16]");
        refusedTensor(medusaWith(f -> f.put("0.0.linear.weight", "F32", E * E)), Layout.MEDUSA, "tensor 0.0.linear.weight", "[256]");
        refusedTensor(medusaWith(f -> f.put("0.0.linear.bias", "F32", E + 2)), Layout.MEDUSA, "tensor 0.0.linear.bias", "expected [16]");
        refusedTensor(medusaWith(f -> f.put("0.0.linear.bias", "F32", 1, E)), Layout.MEDUSA, "tensor 0.0.linear.bias", "[1, 16]");
        refusedTensor(medusaWith(f -> f.put("1.1.weight", "F32", V - 1, E)), Layout.MEDUSA, "tensor 1.1.weight", "expected [40, 16]", "n_vocab 40");
        refusedTensor(medusaWith(f -> f.put("1.1.weight", "F32", V, E, 1)), Layout.MEDUSA, "tensor 1.1.weight");
        refusedTensor(medusaWith(f -> f.tensors.remove("1.0.linear.bias")), Layout.MEDUSA, "tensor 1.0.linear.bias is missing");
        refusedTensor(medusaWith(f -> f.put("2.0.linear.weight", "F32", E, E)), Layout.MEDUSA, "unexpected tensor 2.0.linear.weight");
        refusedTensor(medusaWith(f -> f.tensors.addRaw("0.0.linear.bias", "I32", new long[] {E}, new byte[4 * E])), Layout.MEDUSA,
                "tensor 0.0.linear.bias is I32");
    }

    @Test
    void hydraBadShapesNameTheTensor() {
        // head 1's first block reads [h; two embeddings]: 3 E wide
        refusedTensor(hydraWith(f -> f.put("hydra_mlp.1.0.linear.weight", "F32", E, 2 * E)), Layout.HYDRA,
                "tensor hydra_mlp.1.0.linear.weight", "expected [16, 48]");
        refusedTensor(hydraWith(f -> f.put("hydra_mlp.0.0.res_connection.weight", "F32", E, E)), Layout.HYDRA,
                "tensor hydra_mlp.0.0.res_connection.weight", "expected [16, 32]");
        refusedTensor(hydraWith(f -> f.put("hydra_mlp.0.0.res_connection.bias", "F32", 2 * E)), Layout.HYDRA,
                "tensor hydra_mlp.0.0.res_connection.bias");
        refusedTensor(hydraWith(f -> f.put("hydra_mlp.1.1.linear.weight", "F32", E, 3 * E)), Layout.HYDRA,
                "tensor hydra_mlp.1.1.linear.weight", "expected [16, 16]");
        refusedTensor(hydraWith(f -> f.put("hydra_mlp.1.1.linear.bias", "F32", V)), Layout.HYDRA, "tensor hydra_mlp.1.1.linear.bias");
        refusedTensor(hydraWith(f -> f.put("hydra_lm_head.0.weight", "F32", V, 2 * E)), Layout.HYDRA, "tensor hydra_lm_head.0.weight");
        refusedTensor(hydraWith(f -> f.put("hydra_lm_head.1.bias", "F32", E)), Layout.HYDRA, "tensor hydra_lm_head.1.bias", "expected [40]");
        refusedTensor(hydraWith(f -> f.tensors.remove("hydra_mlp.1.0.res_connection.bias")), Layout.HYDRA,
                "tensor hydra_mlp.1.0.res_connection.bias is missing");
        refusedTensor(hydraWith(f -> f.tensors.remove("hydra_lm_head.1.bias")), Layout.HYDRA, "tensor hydra_lm_head.1.bias is missing");
        refusedTensor(hydraWith(f -> f.put("hydra_mlp.1.1.res_connection.weight", "F32", E, E)), Layout.HYDRA,
                "unexpected tensor hydra_mlp.1.1.res_connection.weight");
    }

    @Test
    void badConfigsNameTheConfig() {
        refused(medusaWith(f -> f.config.remove("medusa_num_heads")), Layout.MEDUSA, "config.json", "missing \"medusa_num_heads\"");
        refused(medusaWith(f -> f.config.addProperty("medusa_num_heads", 0)), Layout.MEDUSA, "config.json", "out of range");
        refused(medusaWith(f -> f.config.addProperty("medusa_num_layers", 1.5)), Layout.MEDUSA, "config.json", "medusa_num_layers");
        refused(medusaWith(f -> f.config.addProperty("medusa_num_heads", "two")), Layout.MEDUSA, "config.json", "not a number");
        refused(hydraWith(f -> f.config.addProperty("hydra_head_arch", "prefix-mlp")), Layout.HYDRA, "config.json", "prefix-mlp", "not supported");
        refused(hydraWith(f -> f.config.addProperty("hidden_state_offset", 1)), Layout.HYDRA, "config.json", "hidden_state_offset");
        refused(hydraWith(f -> f.config.addProperty("grounded_heads", "yes")), Layout.HYDRA, "config.json", "grounded_heads");
        // a Hydra folder read as Medusa heads: its config has no medusa fields
        refused(HeadsFixture.hydra(2, 1, E, V, true, "F32", 9), Layout.MEDUSA, "medusa_lm_head.safetensors", "cannot read");
    }

    @Test
    void missingConfigAndPickleAreRefused() throws IOException {
        Path dir = write(HeadsFixture.medusa(1, 1, E, V, true, "F32", 10));
        Files.delete(dir.resolve("config.json"));
        var e = assertThrows(ModelFormatException.class, () -> open(dir, Layout.MEDUSA));
        assertTrue(e.getMessage().contains("config.json") && e.getMessage().contains("missing"), e.getMessage());
        Path pt = Files.writeString(temp.resolve("hydra_lm_head.pt"), "pickle");
        e = assertThrows(ModelFormatException.class, () -> open(pt, Layout.HYDRA));
        assertTrue(e.getMessage().contains("PyTorch pickle") && e.getMessage().contains("safetensors"), e.getMessage());
        e = assertThrows(ModelFormatException.class, () -> open(temp.resolve("nowhere"), Layout.HYDRA));
        assertTrue(e.getMessage().contains("nowhere: does not exist"), e.getMessage());
        var none = assertThrows(IllegalArgumentException.class, () -> open(null, Layout.HYDRA));
        assertTrue(none.getMessage().contains("--heads"), none.getMessage());
    }
}
