package dev.specula.model;

import dev.specula.nativeapi.Backend;
import dev.specula.nativeapi.Context;
import dev.specula.nativeapi.DType;
import dev.specula.nativeapi.NativeModel;
import dev.specula.nativeapi.WeightsMemory;
import dev.specula.tokenizer.Tokenizer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

/**
 * A model file opened, its weights on a context and its tokenizer: everything a generation needs. Closing
 * it closes the native model and unmaps the file. May be shared between threads.
 */
public final class LoadedModel implements AutoCloseable {
    /** The KV cache type models are opened with unless told otherwise. */
    public static final DType DEFAULT_KV_TYPE = DType.F16;

    private final ModelFile file;
    private final NativeModel model;
    private final Tokenizer tokenizer;

    private LoadedModel(ModelFile file, NativeModel model, Tokenizer tokenizer) {
        this.file = file;
        this.model = model;
        this.tokenizer = tokenizer;
    }

    /**
     * Opens a GGUF file (tokenizer from its metadata) or a Hugging Face checkpoint folder (tokenizer from its
     * tokenizer.json). The KV cache is F16, as llama.cpp keeps it.
     */
    public static LoadedModel open(Context context, Path path) {
        return open(context, path, DEFAULT_KV_TYPE);
    }

    /** As {@link #open(Context, Path)}, with the KV cache in kvType (F32, F16 or BF16). */
    public static LoadedModel open(Context context, Path path, DType kvType) {
        return open(context, ModelFile.open(path), kvType);
    }

    /**
     * Puts an already opened file's weights on context (after, say, a {@link dev.specula.memory.MemoryBudget} was checked against
     * its shape). The model takes the file over: it closes it, also when this fails.
     */
    public static LoadedModel open(Context context, ModelFile file, DType kvType) {
        try {
            Tokenizer tokenizer = tokenizer(file);
            NativeModel model = NativeModels.load(context, file, kvType);
            return new LoadedModel(file, model, tokenizer);
        } catch (RuntimeException e) {
            file.close();
            throw e;
        }
    }

    /**
     * The tokenizer of an open model file: from a GGUF file's metadata, or from the tokenizer.json beside a
     * Hugging Face checkpoint.
     */
    public static Tokenizer tokenizer(ModelFile file) {
        if (file.gguf().isPresent()) return Tokenizer.fromGgufMetadata(file.gguf().get().metadata());
        Path json = huggingFaceTokenizer(file.path());
        try {
            return Tokenizer.fromHuggingFace(json);
        } catch (java.io.IOException e) {
            throw new java.io.UncheckedIOException(json + ": cannot read the tokenizer: " + e.getMessage(), e);
        }
    }

    private static Path huggingFaceTokenizer(Path path) {
        Path dir = Files.isDirectory(path) ? path : path.toAbsolutePath().getParent();
        Path json = dir.resolve("tokenizer.json");
        if (!Files.isRegularFile(json)) throw new IllegalArgumentException(path + ": no tokenizer.json beside the checkpoint");
        return json;
    }

    public NativeModel model() {
        return model;
    }

    public Tokenizer tokenizer() {
        return tokenizer;
    }

    public ModelFile file() {
        return file;
    }

    /** The bytes of the weights as they are handed to the native core (what {@link dev.specula.nativeapi.MemoryPlan} takes). */
    public static long weightBytes(ModelFile file) {
        long sum = 0;
        for (var w : file.weights()) sum += w.nbytes();
        return sum;
    }

    /**
     * The memory the cpu backend takes at load to place the file's matrices, as the backend plans it
     * ({@link WeightsMemory#plan}: its layout and pages are stated natively, once): the Q8_0 matrices prepacked for its
     * int8 kernels (0 with SPECULA_CPU_PREPACK=0, which turns the prepacking off), plus, with SPECULA_CPU_WEIGHTS=copy,
     * the huge-page copy of the others ({@link WeightsMemory#placed}).
     */
    public static long cpuPrepackedBytes(ModelFile file) {
        return WeightsMemory.plan(Backend.CPU.id(), file.config(), false, planned(file.weights())).placed();
    }

    /** The weights as {@link NativeModels#load} hands them over, for the backend's plan of what it makes of them. */
    public static List<WeightsMemory.Planned> planned(List<ModelWeights.Weight> weights) {
        return weights.stream().map(w -> WeightsMemory.Planned.weight(w.role(), w.layer(), w.dtype())).toList();
    }

    @Override
    public void close() {
        model.close();
        file.close();
    }
}
