package dev.specula.model;

import dev.specula.model.ModelWeights.Weight;
import dev.specula.model.gguf.GgufFile;
import dev.specula.model.safetensors.SafetensorsCheckpoint;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Optional;

/**
 * A model opened from disk, whichever format it is in: a GGUF file, or a Hugging Face checkpoint (a folder with
 * config.json and safetensors, or one of its .safetensors / index files). Holds the mapping open; the weights'
 * data segments are valid until {@link #close()}.
 */
public final class ModelFile implements AutoCloseable {
    private final Path path;
    private final GgufFile gguf;
    private final SafetensorsCheckpoint checkpoint;
    private final ModelConfig config;
    private final List<Weight> weights;

    private ModelFile(Path path, GgufFile gguf, SafetensorsCheckpoint checkpoint) {
        this.path = path;
        this.gguf = gguf;
        this.checkpoint = checkpoint;
        if (gguf != null) {
            config = ModelConfig.fromGguf(gguf);
            weights = ModelWeights.fromGguf(gguf, config);
        } else {
            config = ModelConfig.fromHf(checkpoint);
            weights = ModelWeights.fromHf(checkpoint, config);
        }
    }

    /** Opens, checks and maps a model; any problem is a ModelFormatException naming the file at fault. */
    public static ModelFile open(Path path) {
        if (Files.isDirectory(path) || !startsWithGgufMagic(path)) {
            String name = path.getFileName() == null ? "" : path.getFileName().toString();
            if (!Files.isDirectory(path) && !name.endsWith(".safetensors") && !name.endsWith(".json")) {
                throw new ModelFormatException(path, "is neither a GGUF file nor a safetensors checkpoint");
            }
            SafetensorsCheckpoint c = SafetensorsCheckpoint.open(path);
            try {
                return new ModelFile(path, null, c);
            } catch (RuntimeException e) {
                c.close();
                throw e;
            }
        }
        GgufFile g = GgufFile.open(path);
        try {
            return new ModelFile(path, g, null);
        } catch (RuntimeException e) {
            g.close();
            throw e;
        }
    }

    private static boolean startsWithGgufMagic(Path path) {
        try (InputStream in = Files.newInputStream(path)) {
            return Arrays.equals(in.readNBytes(4), new byte[] {'G', 'G', 'U', 'F'});
        } catch (java.nio.file.NoSuchFileException e) {
            throw new ModelFormatException(path, "cannot read the file (no such file)", e);
        } catch (IOException e) {
            throw new ModelFormatException(path, "cannot read the file (" + e + ")", e);
        }
    }

    public Path path() {
        return path;
    }

    public ModelConfig config() {
        return config;
    }

    /** The weights in spec_model_set_weight's terms, in a fixed order: globals, then layer by layer. */
    public List<Weight> weights() {
        return weights;
    }

    /** The GGUF file, for its tokenizer metadata; empty for a safetensors checkpoint. */
    public Optional<GgufFile> gguf() {
        return Optional.ofNullable(gguf);
    }

    /** The safetensors checkpoint; empty for a GGUF file. */
    public Optional<SafetensorsCheckpoint> checkpoint() {
        return Optional.ofNullable(checkpoint);
    }

    @Override
    public void close() {
        if (gguf != null) gguf.close();
        if (checkpoint != null) checkpoint.close();
    }

    @Override
    public String toString() {
        return "ModelFile(" + path + ", " + config.describe() + ")";
    }
}
