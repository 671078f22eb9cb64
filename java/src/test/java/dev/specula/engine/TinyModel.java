package dev.specula.engine;

import dev.specula.model.ModelFile;
import dev.specula.model.NativeModels;
import dev.specula.model.TestModelMaker;
import dev.specula.model.gguf.GgmlType;
import dev.specula.nativeapi.Context;
import dev.specula.nativeapi.DType;
import dev.specula.nativeapi.NativeModel;
import dev.specula.sampling.SamplingOptions;
import dev.specula.tokenizer.Tokenizer;
import dev.specula.tokenizer.VocabTrainer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

/**
 * The Java tests' shared tiny model: a seeded random-weight llama (dim 64, 4 heads, 2 KV heads, ff 160, vocabulary
 * 320 from VocabTrainer's llama vocabulary of seed 3, F32 weights and KV cache) on the cpu backend, with random
 * prompts and their plain greedy references from the independent {@link ReferenceDecoder}.
 */
public final class TinyModel implements AutoCloseable {
    public static final int VOCAB = 320;
    public static final int CONTEXT = 512;

    public final Context context;
    public final ModelFile file;
    public final NativeModel model;

    private TinyModel(Context context, ModelFile file, NativeModel model) {
        this.context = context;
        this.file = file;
        this.model = model;
    }

    /** The maker of the shared model with the given depth, its tokenizer included; other settings may be changed. */
    public static TestModelMaker maker(int layers) {
        return new TestModelMaker().arch("llama").dim(64).layers(layers).heads(4).kvHeads(2).ff(160).vocab(VOCAB).context(CONTEXT)
                .type(GgmlType.F32).seed(3).tokenizer(VocabTrainer.ggufMetadata("llama", VOCAB, 3));
    }

    /** Writes the two-layer model into dir and loads it on a new cpu context. */
    public static TinyModel open(Path dir) {
        return open(dir, 2);
    }

    /** Writes the model of the given depth into dir and loads it on a new cpu context. */
    public static TinyModel open(Path dir, int layers) {
        Path path = dir.resolve("tiny-" + layers + ".gguf");
        maker(layers).write(path);
        Context context = Context.cpu();
        ModelFile file = ModelFile.open(path);
        return new TinyModel(context, file, NativeModels.load(context, file, DType.F32));
    }

    public Tokenizer tokenizer() {
        return Tokenizer.fromGgufMetadata(file.gguf().orElseThrow().metadata());
    }

    /** count prompts of 4 to 27 tokens starting with BOS; half repeat a phrase, so prompt lookup has something to find. */
    public static List<int[]> prompts(int count, long seed) {
        SplittableRandom rng = new SplittableRandom(seed);
        List<int[]> prompts = new ArrayList<>();
        for (int p = 0; p < count; p++) {
            int len = 4 + rng.nextInt(24);
            int[] prompt = new int[len];
            prompt[0] = 1;
            for (int i = 1; i < len; i++) prompt[i] = p % 2 == 0 && i > 6 ? prompt[i - 5] : 3 + rng.nextInt(VOCAB - 3);
            prompts.add(prompt);
        }
        return prompts;
    }

    /** The plain greedy reference output of every prompt. */
    public List<int[]> greedy(List<int[]> prompts, int maxTokens) {
        List<int[]> out = new ArrayList<>();
        for (int[] prompt : prompts) out.add(ReferenceDecoder.generate(model, CONTEXT, prompt, maxTokens, SamplingOptions.GREEDY));
        return out;
    }

    @Override
    public void close() {
        context.close(); // closes the model and every cache made from it
        file.close();
    }
}
