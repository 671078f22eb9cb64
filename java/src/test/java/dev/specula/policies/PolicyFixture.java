package dev.specula.policies;

import static org.junit.jupiter.api.Assertions.*;

import dev.specula.StopReason;
import dev.specula.engine.DecodeLoop;
import dev.specula.engine.DraftPolicy;
import dev.specula.engine.ReferenceDecoder;
import dev.specula.engine.SpecStats;
import dev.specula.engine.TinyModel;
import dev.specula.model.ModelFile;
import dev.specula.model.NativeModels;
import dev.specula.model.TestModelMaker;
import dev.specula.model.gguf.GgmlType;
import dev.specula.nativeapi.Context;
import dev.specula.nativeapi.DType;
import dev.specula.nativeapi.KvCache;
import dev.specula.nativeapi.NativeModel;
import dev.specula.sampling.SamplingOptions;
import dev.specula.tokenizer.Tokenizer;
import dev.specula.tokenizer.VocabTrainer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Supplier;

/**
 * Random-weight models, prompts and plain greedy references for the policy tests, and the check that a
 * policy's greedy speculative output equals them token for token.
 */
final class PolicyFixture implements AutoCloseable {
    static final int VOCAB = TinyModel.VOCAB;
    static final int CONTEXT = TinyModel.CONTEXT;
    static final int MAX_TOKENS = 40;

    final Context context = Context.cpu();
    final List<ModelFile> files = new ArrayList<>();
    final List<int[]> prompts = new ArrayList<>();
    final List<int[]> expected = new ArrayList<>();
    final NativeModel target;
    final Tokenizer tokenizer;

    /** A target of the given depth (the shared {@link TinyModel}'s shape), its references on `prompts` prompts. */
    PolicyFixture(Path dir, int layers, int prompts) {
        target = model(dir.resolve("target.gguf"), TinyModel.maker(layers));
        tokenizer = tokenizer(0);
        this.prompts.addAll(TinyModel.prompts(prompts, 5));
        for (int[] prompt : this.prompts) expected.add(ReferenceDecoder.generate(target, CONTEXT, prompt, MAX_TOKENS, SamplingOptions.GREEDY));
    }

    /** Writes and loads a random model with the shared tokenizer metadata (same style, size and seed as the target's). */
    NativeModel model(Path path, TestModelMaker maker) {
        maker.vocab(VOCAB).context(CONTEXT).type(GgmlType.F32).tokenizer(VocabTrainer.ggufMetadata("llama", VOCAB, 3)).write(path);
        ModelFile file = ModelFile.open(path);
        files.add(file);
        return NativeModels.load(context, file, DType.F32);
    }

    /** The tokenizer of the i-th model loaded. */
    Tokenizer tokenizer(int i) {
        return Tokenizer.fromGgufMetadata(files.get(i).gguf().orElseThrow().metadata());
    }

    /**
     * Runs every prompt greedily through the engine with a fresh policy each, asserts the output equals plain
     * greedy decoding, closes the policies and returns the summed statistics.
     */
    <P extends DraftPolicy> SpecStats checkLossless(Supplier<P> policies, int maxTreeNodes, boolean adaptive) {
        SpecStats total = new SpecStats();
        try (DecodeLoop engine = new DecodeLoop(target, maxTreeNodes, adaptive)) {
            for (int p = 0; p < prompts.size(); p++) {
                P policy = policies.get();
                try (KvCache kv = target.newKvCache(CONTEXT)) {
                    DecodeLoop.Result r = engine.generate(new DecodeLoop.Request(kv, prompts.get(p), MAX_TOKENS,
                            SamplingOptions.GREEDY, policy, t -> false, t -> true, () -> false));
                    assertArrayEquals(expected.get(p), r.tokens(), "prompt " + p + " with " + policy.name());
                    assertEquals(StopReason.MAX_TOKENS, r.reason());
                    total.add(r.stats());
                } finally {
                    if (policy instanceof AutoCloseable c) {
                        try {
                            c.close();
                        } catch (Exception e) {
                            throw new RuntimeException(e);
                        }
                    }
                }
            }
        }
        return total;
    }

    static String describe(SpecStats s) {
        return String.format(java.util.Locale.ROOT, "%d steps, %d tokens, mean accepted %.3f, acceptance at depth 1 %.3f, histogram %s",
                s.steps(), s.tokens(), s.meanAccepted(), s.acceptanceAtDepth(1), java.util.Arrays.toString(s.acceptedLengthHistogram()));
    }

    @Override
    public void close() {
        context.close(); // closes the models and caches made from it
        files.forEach(ModelFile::close);
    }
}
