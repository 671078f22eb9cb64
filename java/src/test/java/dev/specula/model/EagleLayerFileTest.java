package dev.specula.model;

import static org.junit.jupiter.api.Assertions.*;

import dev.specula.nativeapi.Arch;
import dev.specula.nativeapi.RopeScaling;
import dev.specula.nativeapi.RopeStyle;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.function.Consumer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The EAGLE layer loader on random-weight files in the published layout, and every way a file can fail to fit the target. */
class EagleLayerFileTest {
    static final int E = 32, V = 40, HEADS = 4, KV = 2, HD = 8, FF = 48;
    static final ModelConfig TARGET = new ModelConfig(Arch.LLAMA, V, E, 2, HEADS, KV, HD, 64, 512, 1e-5f, 10000f, RopeStyle.NORM, HD,
            RopeScaling.NONE, 0, 0, 0, 0, true);

    @TempDir
    Path temp;
    int dirs;

    static EagleFixture good() {
        return EagleFixture.random(E, V, HEADS, KV, HD, FF, "F16", 7);
    }

    private Path write(EagleFixture f) {
        return f.write(temp.resolve("eagle" + dirs++));
    }

    /** The file fails to open, with a message naming the file (config.json or the weights) and each of needles. */
    private void refused(EagleFixture f, String fileName, String... needles) {
        Path dir = write(f);
        ModelFormatException e = assertThrows(ModelFormatException.class, () -> EagleLayerFile.open(dir, TARGET).close());
        assertTrue(e.getMessage().startsWith(dir.resolve(fileName).toString()), e.getMessage());
        for (String n : needles) assertTrue(e.getMessage().contains(n), "\"" + e.getMessage() + "\" lacks \"" + n + "\"");
    }

    private void refusedTensor(Consumer<EagleFixture> change, String... needles) {
        EagleFixture f = good();
        change.accept(f);
        refused(f, EagleLayerFile.FILE_NAME, needles);
    }

    @Test
    void theLayerLoadsInEveryFloatTypeFromTheFolderTheFileOrAnEagleSubfolder() {
        for (String dtype : new String[] {"F32", "F16", "BF16"}) {
            try (EagleLayerFile l = EagleLayerFile.open(write(EagleFixture.random(E, V, HEADS, KV, HD, FF, dtype, 1)), TARGET)) {
                assertEquals(1, l.config().nLayer());
                assertEquals(FF, l.config().nFf());
                assertEquals(RopeStyle.NEOX, l.config().ropeStyle());
                assertTrue(l.fcBias());
                assertEquals(2 + 8, l.weights().size());
                long elements = 2L * E * E + E + 2L * HEADS * HD * E + 2L * KV * HD * E + E + 3L * FF * E;
                assertEquals(elements * (dtype.equals("F32") ? 4 : 2), l.weightBytes());
            }
        }
        Path dir = write(good());
        try (EagleLayerFile l = EagleLayerFile.open(dir.resolve(EagleLayerFile.FILE_NAME), TARGET)) {
            assertEquals(E, l.config().nEmbd());
        }
        good().write(temp.resolve("heads/eagle"));
        try (EagleLayerFile l = EagleLayerFile.open(temp.resolve("heads"), TARGET)) {
            assertEquals(V, l.config().nVocab());
        }
    }

    @Test
    void optionalTensorsAreTakenAndTheBiasFollowsTheConfigOrTheFile() {
        // EAGLE's frozen copy of the target's embedding and an input norm on layer 0 are accepted
        EagleFixture f = good().put("embed_tokens.weight", V, E).putNorm("layers.0.input_layernorm.weight", E);
        try (EagleLayerFile l = EagleLayerFile.open(write(f), TARGET)) {
            assertEquals(2 + 9, l.weights().size());
        }
        // without "bias" the file decides
        EagleFixture noBias = good();
        noBias.config.remove("bias");
        noBias.tensors.remove("fc.bias");
        try (EagleLayerFile l = EagleLayerFile.open(write(noBias), TARGET)) {
            assertFalse(l.fcBias());
        }
        // two decoder layers: the second has its input norm
        EagleFixture two = good().layer(1, E, HEADS, KV, HD, FF);
        two.config.addProperty("num_hidden_layers", 2);
        try (EagleLayerFile l = EagleLayerFile.open(write(two), TARGET)) {
            assertEquals(2, l.config().nLayer());
        }
    }

    @Test
    void everyTensorOfTheWrongShapeIsRefusedByName() {
        for (var entry : good().shapes.entrySet()) {
            String name = entry.getKey();
            long[] wrong = entry.getValue().clone();
            wrong[wrong.length - 1] += 1;
            refusedTensor(f -> f.put(name, wrong), "tensor " + name, "has shape " + Arrays.toString(wrong), "expected "
                    + Arrays.toString(entry.getValue()));
            long[] transposed = entry.getValue().length == 2 ? new long[] {entry.getValue()[1], entry.getValue()[0]} : new long[] {1, entry.getValue()[0]};
            if (!Arrays.equals(transposed, entry.getValue()))
                refusedTensor(f -> f.put(name, transposed), "tensor " + name, "expected " + Arrays.toString(entry.getValue()));
        }
        refusedTensor(f -> f.put("embed_tokens.weight", V + 1, E), "tensor embed_tokens.weight", "expected [" + V + ", " + E + "]");
    }

    @Test
    void everyMissingTensorIsRefusedByName() {
        for (String name : good().shapes.keySet()) refusedTensor(f -> f.tensors.remove(name), "tensor " + name + " is missing");
        EagleFixture two = good();
        two.config.addProperty("num_hidden_layers", 2);
        refused(two, EagleLayerFile.FILE_NAME, "tensor layers.1.input_layernorm.weight is missing");
        EagleFixture biasSaid = good();
        biasSaid.tensors.remove("fc.bias");
        refused(biasSaid, EagleLayerFile.FILE_NAME, "tensor fc.bias is missing", "\"bias\": true");
    }

    @Test
    void unexpectedTensorsAndOtherLayoutsAreRefused() {
        refusedTensor(f -> f.put("layers.0.self_attn.rotary_emb.inv_freq", HD / 2), "unexpected tensor layers.0.self_attn.rotary_emb.inv_freq");
        refusedTensor(f -> f.putNorm("norm.weight", E), "unexpected tensor norm.weight");
        EagleFixture unbiased = good();
        unbiased.config.addProperty("bias", false);
        refused(unbiased, EagleLayerFile.FILE_NAME, "unexpected tensor fc.bias");
        refusedTensor(f -> f.put("midlayer.self_attn.q_proj.weight", HEADS * HD, 2 * E).put("d2t", V), "EAGLE-3");
        refusedTensor(f -> f.tensors.addRaw("fc.weight", "I32", new long[] {E, 2 * E}, new byte[E * 2 * E * 4]), "tensor fc.weight is I32");
    }

    @Test
    void aConfigThatDoesNotFitTheTargetIsRefused() {
        EagleFixture wide = good();
        wide.config.addProperty("hidden_size", E * 2);
        refused(wide, "config.json", "hidden_size " + 2 * E, "target's " + E);
        EagleFixture vocab = good();
        vocab.config.addProperty("vocab_size", V + 1);
        refused(vocab, "config.json", "vocab_size " + (V + 1));
        EagleFixture gemma = good();
        gemma.config.addProperty("model_type", "gemma3_text");
        refused(gemma, "config.json", "not supported");
        EagleFixture heads = good();
        heads.config.addProperty("num_attention_heads", 3);
        refused(heads, "config.json");
    }

    @Test
    void missingFilesAndPicklesAreRefusedWithAdvice() throws IOException {
        Path dir = write(good());
        Files.delete(dir.resolve("config.json"));
        ModelFormatException e = assertThrows(ModelFormatException.class, () -> EagleLayerFile.open(dir, TARGET));
        assertTrue(e.getMessage().contains("config.json") && e.getMessage().contains("missing"), e.getMessage());
        Path pickles = Files.createDirectories(temp.resolve("pickles"));
        Files.write(pickles.resolve("pytorch_model.bin"), new byte[16]);
        e = assertThrows(ModelFormatException.class, () -> EagleLayerFile.open(pickles, TARGET));
        assertTrue(e.getMessage().contains("safetensors"), e.getMessage());
        e = assertThrows(ModelFormatException.class, () -> EagleLayerFile.open(temp.resolve("nothing"), TARGET));
        assertTrue(e.getMessage().contains("does not exist"), e.getMessage());
        Path empty = Files.createDirectories(temp.resolve("empty"));
        e = assertThrows(ModelFormatException.class, () -> EagleLayerFile.open(empty, TARGET));
        assertTrue(e.getMessage().contains("holds no model.safetensors"), e.getMessage());
    }
}
