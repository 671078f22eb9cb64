package dev.specula.model;

import dev.specula.nativeapi.Context;
import dev.specula.nativeapi.DType;
import dev.specula.nativeapi.NativeModel;
import dev.specula.nativeapi.WeightRole;
import dev.specula.tokenizer.Tokenizer;
import java.nio.file.Files;
import java.nio.file.Path;

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
     * The anonymous memory the cpu backend takes at load to prepack the Q8_0 matrices for its int8 kernels
     * (cpu_model.cpp, prepack_q8_weights): every product matrix stored as Q8_0 (the output, or the embeddings it is
     * tied to, and each layer's attention and feed-forward matrices) once, 544 bytes per started group of 512
     * weights of a row, in whole 2 MiB pages; 0 with SPECULA_CPU_PREPACK=0, which turns the prepacking off.
     */
    public static long cpuPrepackedBytes(ModelFile file) {
        if ("0".equals(System.getenv("SPECULA_CPU_PREPACK"))) return 0;
        boolean ownOutput = file.weights().stream().anyMatch(w -> w.role() == WeightRole.OUTPUT);
        java.util.Set<Long> seen = new java.util.HashSet<>(); // one matrix in two roles is prepacked once
        long sum = 0;
        for (var w : file.weights()) {
            boolean product = switch (w.role()) {
                case OUTPUT, ATTN_Q, ATTN_K, ATTN_V, ATTN_OUT, FFN_GATE, FFN_UP, FFN_DOWN -> true;
                case TOKEN_EMBD -> !ownOutput;
                default -> false;
            };
            if (product && w.dtype() == DType.Q8_0 && seen.add(w.data().address()))
                sum += w.rows() * ((w.cols() + PREPACK_GROUP - 1) / PREPACK_GROUP) * PREPACK_GROUP_BYTES;
        }
        return (sum + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
    }

    private static final long PREPACK_GROUP = 512, PREPACK_GROUP_BYTES = 544, HUGE_PAGE = 2L << 20;

    @Override
    public void close() {
        model.close();
        file.close();
    }
}
