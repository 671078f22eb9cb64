package dev.specula.engine;

import static org.junit.jupiter.api.Assertions.*;

import dev.specula.model.LoadedModel;
import dev.specula.model.ModelFile;
import dev.specula.model.NativeModels;
import dev.specula.model.TestModelMaker;
import dev.specula.model.gguf.GgmlType;
import dev.specula.nativeapi.Context;
import dev.specula.nativeapi.DType;
import dev.specula.nativeapi.KvCache;
import dev.specula.nativeapi.NativeModel;
import dev.specula.oracle.LlamaCppOracle;
import dev.specula.policies.NoSpeculation;
import dev.specula.sampling.SamplingOptions;
import dev.specula.tokenizer.Tokenizer;
import dev.specula.tokenizer.VocabTrainer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Plain steps choosing tokens on the device (a verification of one-node trees, forced here on the cpu backend,
 * where it is otherwise off) give exactly the host path's greedy output, in the plain decoder and in the
 * speculative engine's plain steps.
 */
class DeviceSamplingTest {
    static final int MAX_TOKENS = 32;

    @TempDir
    Path temp;

    static List<int[]> prompts(int count, int vocab, long seed) {
        SplittableRandom rng = new SplittableRandom(seed);
        List<int[]> out = new ArrayList<>();
        for (int p = 0; p < count; p++) {
            int[] prompt = new int[3 + rng.nextInt(20)];
            prompt[0] = 1;
            for (int i = 1; i < prompt.length; i++) prompt[i] = 3 + rng.nextInt(vocab - 3);
            out.add(prompt);
        }
        return out;
    }

    /** Plain decoding: the independent host reference, or the decode loop's plain steps chosen on the device. */
    static int[] plain(NativeModel model, int[] prompt, SamplingOptions sampling, boolean onDevice) {
        if (!onDevice) return ReferenceDecoder.generate(model, 512, prompt, MAX_TOKENS, sampling);
        return speculativePlainSteps(model, List.of(prompt), sampling, true, 0);
    }

    static int[] speculativePlainSteps(NativeModel model, List<int[]> prompts, SamplingOptions sampling, boolean onDevice, int index) {
        try (DecodeLoop engine = new DecodeLoop(model, new SpeculationBudget(1, false), onDevice)) {
            List<KvCache> caches = new ArrayList<>();
            List<DecodeLoop.Request> batch = new ArrayList<>();
            for (int[] prompt : prompts) {
                KvCache kv = model.newKvCache(512);
                caches.add(kv);
                batch.add(new DecodeLoop.Request(kv, prompt, MAX_TOKENS, sampling, new NoSpeculation(), t -> false, t -> true, () -> false));
            }
            try {
                return engine.generateBatch(batch).get(index).tokens();
            } finally {
                for (KvCache kv : caches) kv.close();
            }
        }
    }

    static void assertBothPathsAgree(NativeModel model, List<int[]> prompts) {
        for (int[] prompt : prompts) {
            int[] host = plain(model, prompt, SamplingOptions.GREEDY, false);
            assertEquals(MAX_TOKENS, host.length);
            assertArrayEquals(host, plain(model, prompt, SamplingOptions.GREEDY, true));
        }
        // Batched plain steps through the speculative engine: one verification call for all sequences.
        for (int i = 0; i < prompts.size(); i++) {
            int[] host = plain(model, prompts.get(i), SamplingOptions.GREEDY, false);
            assertArrayEquals(host, speculativePlainSteps(model, prompts, SamplingOptions.GREEDY, true, i), "sequence " + i);
            assertArrayEquals(host, speculativePlainSteps(model, prompts, SamplingOptions.GREEDY, false, i), "sequence " + i);
        }
    }

    @Test
    void greedyIsIdenticalOnBothPathsOnARandomModel() {
        Path path = temp.resolve("m.gguf");
        new TestModelMaker().arch("llama").dim(64).layers(2).heads(4).kvHeads(2).ff(160).vocab(320).context(512)
                .type(GgmlType.F32).seed(11).tokenizer(VocabTrainer.ggufMetadata("llama", 320, 3)).write(path);
        try (Context ctx = Context.cpu(); ModelFile file = ModelFile.open(path)) {
            NativeModel model = NativeModels.load(ctx, file, DType.F32);
            assertBothPathsAgree(model, prompts(6, 320, 7));
        }
    }

    @Test
    void sampledTokensComeFromTheDevicesStreamWhenAsked() {
        Path path = temp.resolve("s.gguf");
        new TestModelMaker().arch("llama").dim(64).layers(2).heads(4).kvHeads(2).ff(160).vocab(320).context(512)
                .type(GgmlType.F32).seed(12).tokenizer(VocabTrainer.ggufMetadata("llama", 320, 3)).write(path);
        try (Context ctx = Context.cpu(); ModelFile file = ModelFile.open(path)) {
            NativeModel model = NativeModels.load(ctx, file, DType.F32);
            int[] prompt = prompts(1, 320, 9).get(0);
            SamplingOptions hot = SamplingOptions.sampled(1.5f, 42);
            int[] device = plain(model, prompt, hot, true);
            // The device's Philox stream is reproducible, and the same whether the decoder or the engine draws...
            assertArrayEquals(device, plain(model, prompt, hot, true));
            assertArrayEquals(device, speculativePlainSteps(model, List.of(prompt), hot, true, 0));
            // ...and it is not the host's stream: at T = 1.5 over a random model's 320 tokens, 32 equal draws from
            // two different generators are out of the question, so this shows the device path was taken.
            assertFalse(java.util.Arrays.equals(device, plain(model, prompt, hot, false)));
            // Repetition penalty and min-p are host-only: asked for the device, the decoder still samples on the host.
            SamplingOptions penalised = SamplingOptions.GREEDY.withRepetitionPenalty(1.3f, 64);
            assertArrayEquals(plain(model, prompt, penalised, false), plain(model, prompt, penalised, true));
        }
    }

    @Test
    void greedyIsIdenticalOnBothPathsOnTheDemoModel() {
        Path demo = LlamaCppOracle.repoRoot().resolve("models/demo-target.gguf");
        org.junit.jupiter.api.Assumptions.assumeTrue(Files.isRegularFile(demo), "no demo model at " + demo);
        try (Context ctx = Context.cpu(); LoadedModel loaded = LoadedModel.open(ctx, demo)) {
            Tokenizer tok = loaded.tokenizer();
            List<int[]> prompts = new ArrayList<>();
            for (String text : List.of("public static int max(int a, int b) {\n", "import java.util.", "for (int i = 0; i < n; i++) {",
                    "/** Returns the sum of the values. */\n"))
                prompts.add(tok.encode(text, tok.addBos()));
            assertBothPathsAgree(loaded.model(), prompts);
        }
    }
}
