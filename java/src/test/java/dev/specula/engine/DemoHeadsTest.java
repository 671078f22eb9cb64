package dev.specula.engine;

import static org.junit.jupiter.api.Assertions.*;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.google.gson.Gson;
import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import dev.specula.model.DraftHeadsFile;
import dev.specula.model.LoadedModel;
import dev.specula.nativeapi.Context;
import dev.specula.nativeapi.DType;
import dev.specula.nativeapi.DeviceBuffer;
import dev.specula.nativeapi.ForwardArgs;
import dev.specula.nativeapi.KvCache;
import dev.specula.nativeapi.NativeHeads;
import dev.specula.nativeapi.NativeModel;
import dev.specula.oracle.LlamaCppOracle;
import dev.specula.policies.DraftHeadsPolicy;
import dev.specula.sampling.SamplingOptions;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * The demo target's trained heads (models/demo-heads): the final hidden states and every head's logits against the
 * training code's own forward (recorded in reference.json, so CI needs no PyTorch), and greedy decoding with each
 * head type equal to plain greedy decoding on demo prompts, with the heads accepting drafts.
 */
class DemoHeadsTest {
    static final Path MODELS = LlamaCppOracle.repoRoot().resolve("models");
    static final Path HEADS = MODELS.resolve("demo-heads");

    static int[] ints(JsonArray a) {
        int[] out = new int[a.size()];
        for (int i = 0; i < out.length; i++) out[i] = a.get(i).getAsInt();
        return out;
    }

    static float[] floats(JsonArray a) {
        float[] out = new float[a.size()];
        for (int i = 0; i < out.length; i++) out[i] = a.get(i).getAsFloat();
        return out;
    }

    /** max |a - b| over max |b|. */
    static double relErr(float[] a, float[] b) {
        double d = 0, m = 1e-6;
        for (int i = 0; i < a.length; i++) {
            d = Math.max(d, Math.abs(a[i] - b[i]));
            m = Math.max(m, Math.abs(b[i]));
        }
        return d / m;
    }

    static float[] read(DeviceBuffer b, long offset, int n) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment host = arena.allocate((long) n * 4);
            b.copyToHost(offset, host, 0, (long) n * 4);
            return host.toArray(ValueLayout.JAVA_FLOAT);
        }
    }

    @Test
    void hiddenStatesAndHeadLogitsMatchTheTrainingCode() throws Exception {
        Path refFile = HEADS.resolve("reference.json");
        assumeTrue(Files.isRegularFile(refFile), "no demo heads reference at " + refFile);
        JsonObject ref = new Gson().fromJson(Files.readString(refFile), JsonObject.class);
        int[] tokens = ints(ref.getAsJsonArray("tokens"));
        // An F32 KV cache, as the training code keeps its keys and values.
        try (Context ctx = Context.cpu(); LoadedModel target = LoadedModel.open(ctx, MODELS.resolve("demo-target.gguf"), DType.F32)) {
            NativeModel m = target.model();
            int e = m.shape().nEmbd(), v = m.shape().nVocab();
            assertArrayEquals(tokens, target.tokenizer().encode(ref.get("prompt").getAsString(), true));
            double worstHidden = 0, worstHydra = 0, worstMedusa = 0;
            try (KvCache kv = m.newKvCache(tokens.length + 1); DeviceBuffer hidden = ctx.allocate((long) tokens.length * e * 4);
                 DeviceBuffer logits = ctx.allocate((long) tokens.length * v * 4); DeviceBuffer one = ctx.allocate((long) e * 4);
                 DraftHeadsFile hydraFile = DraftHeadsFile.open(HEADS, DraftHeadsFile.Layout.HYDRA, e, v);
                 DraftHeadsFile medusaFile = DraftHeadsFile.open(HEADS, DraftHeadsFile.Layout.MEDUSA, e, v);
                 NativeHeads hydra = hydraFile.load(m); NativeHeads medusa = medusaFile.load(m);
                 Arena arena = Arena.ofConfined()) {
                m.forward(kv, ForwardArgs.chainAll(tokens, logits).withFinalHidden(hidden, 0));
                for (JsonElement el : ref.getAsJsonArray("rows")) {
                    JsonObject row = el.getAsJsonObject();
                    int pos = row.get("position").getAsInt();
                    float[] want = floats(row.getAsJsonArray("hidden"));
                    worstHidden = Math.max(worstHidden, relErr(read(hidden, (long) pos * e * 4, e), want));
                    // the heads on the recorded hidden state: the head forward alone is compared
                    one.copyFromHost(arena.allocateFrom(ValueLayout.JAVA_FLOAT, want), 0, 0, (long) e * 4);
                    int[] drafted = ints(row.getAsJsonArray("tokens"));
                    JsonArray hydraRows = row.getAsJsonArray("hydra"), medusaRows = row.getAsJsonArray("medusa");
                    for (int i = 0; i < hydraRows.size(); i++) {
                        hydra.forward(i, 1, one, 0, Arrays.copyOf(drafted, i + 1), logits, 0);
                        worstHydra = Math.max(worstHydra, relErr(read(logits, 0, v), floats(hydraRows.get(i).getAsJsonArray())));
                        medusa.forward(i, 1, one, 0, null, logits, 0);
                        worstMedusa = Math.max(worstMedusa, relErr(read(logits, 0, v), floats(medusaRows.get(i).getAsJsonArray())));
                    }
                }
            }
            System.out.printf("demo heads vs PyTorch: hidden %.2e, hydra logits %.2e, medusa logits %.2e (max |diff| / max |ref|)%n",
                    worstHidden, worstHydra, worstMedusa);
            assertTrue(worstHidden < 1e-4, "final hidden states differ by " + worstHidden);
            assertTrue(worstHydra < 1e-4, "hydra logits differ by " + worstHydra);
            assertTrue(worstMedusa < 1e-4, "medusa logits differ by " + worstMedusa);
        }
    }

    @Test
    void greedyWithEachHeadTypeEqualsPlainGreedy() throws Exception {
        assumeTrue(Files.isDirectory(HEADS), "no demo heads at " + HEADS);
        try (Context ctx = Context.cpu(); LoadedModel target = LoadedModel.open(ctx, MODELS.resolve("demo-target.gguf"), DType.F32)) {
            NativeModel m = target.model();
            int e = m.shape().nEmbd(), v = m.shape().nVocab();
            List<int[]> prompts = new ArrayList<>();
            Gson gson = new Gson();
            List<String> lines = Files.readAllLines(MODELS.resolve("demo-prompts.jsonl"));
            for (int i = 0; i < lines.size(); i += 10) { // one prompt of each category
                String text = gson.fromJson(lines.get(i), JsonObject.class).getAsJsonArray("turns").get(0).getAsString();
                int[] t = target.tokenizer().encode(text, true);
                prompts.add(Arrays.copyOfRange(t, Math.max(0, t.length - 96), t.length));
            }
            List<int[]> want = new ArrayList<>();
            for (int[] p : prompts) want.add(ReferenceDecoder.generate(m, 512, p, 48, SamplingOptions.GREEDY));
            for (DraftHeadsFile.Layout layout : DraftHeadsFile.Layout.values()) {
                SpecStats total = new SpecStats();
                try (DraftHeadsFile file = DraftHeadsFile.open(HEADS, layout, e, v); NativeHeads heads = file.load(m);
                     DecodeLoop loop = new DecodeLoop(m, DraftHeadsPolicy.LARGEST_TREE, false)) {
                    for (int p = 0; p < prompts.size(); p++) {
                        try (KvCache kv = m.newKvCache(512); DraftHeadsPolicy policy = new DraftHeadsPolicy(layout.cliName(), heads)) {
                            DecodeLoop.Result r = loop.generate(new DecodeLoop.Request(kv, prompts.get(p), 48, SamplingOptions.GREEDY, policy,
                                    x -> false, x -> true, () -> false));
                            assertArrayEquals(want.get(p), r.tokens(), layout.cliName() + " heads, prompt " + p);
                            total.add(r.stats());
                        }
                    }
                }
                System.out.printf("demo %s heads: %.2f tokens per step%n", layout.cliName(), total.meanAccepted());
                assertTrue(total.meanAccepted() > 1.3, layout.cliName() + " heads accept too little: " + total.meanAccepted());
            }
        }
    }
}
