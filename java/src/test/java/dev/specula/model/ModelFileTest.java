package dev.specula.model;

import static org.junit.jupiter.api.Assertions.*;

import dev.specula.model.gguf.GgmlType;
import dev.specula.nativeapi.RopeStyle;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class ModelFileTest {
    @TempDir
    Path dir;

    @Test
    void opensEitherFormat() throws IOException {
        Path gguf = new TestModelMaker().type(GgmlType.Q8_0).tokenizer(TinyVocab.metadata()).write(dir.resolve("m.gguf")).file();
        try (ModelFile m = ModelFile.open(gguf)) {
            assertTrue(m.gguf().isPresent());
            assertTrue(m.checkpoint().isEmpty());
            assertEquals(RopeStyle.NORM, m.config().ropeStyle());
            assertEquals(3 + 9 * 2, m.weights().size());
            assertEquals("llama", m.gguf().orElseThrow().getString("tokenizer.ggml.model"));
        }
        Path hf = new HfFixture().write(dir.resolve("hf"), 2);
        for (Path p : new Path[] {hf, hf.resolve("model.safetensors.index.json")}) {
            try (ModelFile m = ModelFile.open(p)) {
                assertTrue(m.checkpoint().isPresent());
                assertEquals(RopeStyle.NEOX, m.config().ropeStyle());
                assertEquals(3 + 9 * 2, m.weights().size());
            }
        }
    }

    @Test
    void otherFilesAreClearErrors() throws IOException {
        Path text = Files.writeString(dir.resolve("notes.bin"), "hello");
        ModelFormatException e = assertThrows(ModelFormatException.class, () -> ModelFile.open(text));
        assertEquals(text + ": is neither a GGUF file nor a safetensors checkpoint", e.getMessage());
        Path missing = dir.resolve("absent.gguf");
        e = assertThrows(ModelFormatException.class, () -> ModelFile.open(missing));
        assertTrue(e.getMessage().startsWith(missing + ": cannot read the file"), e.getMessage());
    }
}
