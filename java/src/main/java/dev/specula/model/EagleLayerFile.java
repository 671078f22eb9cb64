package dev.specula.model;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import dev.specula.model.safetensors.SafetensorsCheckpoint;
import dev.specula.model.safetensors.SafetensorsFile;
import dev.specula.model.safetensors.SafetensorsTensor;
import dev.specula.nativeapi.Arch;
import dev.specula.nativeapi.Backend;
import dev.specula.nativeapi.Context;
import dev.specula.nativeapi.DType;
import dev.specula.nativeapi.ModelShape;
import dev.specula.nativeapi.NativeModel;
import dev.specula.nativeapi.WeightRole;
import dev.specula.nativeapi.WeightShape;
import dev.specula.nativeapi.WeightsMemory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * An EAGLE-1 draft layer as published: {@code model.safetensors} (or any one safetensors file) with its
 * {@code config.json}, a Hugging Face llama (or qwen2) config of one decoder layer over the target's hidden size and
 * vocabulary. Tensors:
 * <ul>
 *   <li>{@code fc.weight} [n_embd][2 n_embd] over [embedding(token); feature], and {@code fc.bias} [n_embd] when the
 *   config's {@code "bias"} is true (absent: when the file has it);</li>
 *   <li>per layer l, {@code layers.l.self_attn.{q,k,v,o}_proj.weight}, {@code layers.l.mlp.{gate,up,down}_proj.weight},
 *   {@code layers.l.post_attention_layernorm.weight}; {@code layers.l.input_layernorm.weight} for l &gt; 0 (EAGLE-1's
 *   layer 0 has none; one there is used); q/k/v biases for qwen2;</li>
 *   <li>optionally {@code embed_tokens.weight} [n_vocab][n_embd], EAGLE's frozen copy of the target's embedding: its shape
 *   is checked, and the target's own is used.</li>
 * </ul>
 * The layer reuses the target's embedding and LM head, and its output goes to the LM head without a norm. The path is
 * the folder holding both files (or holding them in a subfolder named {@code eagle}) or the safetensors file. Every
 * problem is a {@link ModelFormatException} naming the file and, where one is at fault, the tensor.
 */
public final class EagleLayerFile implements AutoCloseable {
    /** The subfolder of a heads folder that holds an EAGLE layer (models/demo-heads/eagle). */
    public static final String FOLDER = "eagle";
    /** The weights' file name in an EAGLE folder. */
    public static final String FILE_NAME = "model.safetensors";
    static final String EMBED = "embed_tokens.weight";

    /** One of the layer's own tensors: a model weight (role, layer) or, with role null, the fc (bias: fcBias). */
    public record Weight(WeightRole role, int layer, boolean fcBias, DType dtype, SafetensorsTensor tensor) {}

    private final SafetensorsFile file;
    private final ModelConfig config;
    private final boolean fcBias;
    private final List<Weight> weights;

    private EagleLayerFile(SafetensorsFile file, ModelConfig config, boolean fcBias, List<Weight> weights) {
        this.file = file;
        this.config = config;
        this.fcBias = fcBias;
        this.weights = weights;
    }

    /** Opens the layer at path for a target of this shape; refuses anything that does not fit it. */
    public static EagleLayerFile open(Path path, ModelShape target) {
        if (path == null) throw new IllegalArgumentException("drafter eagle needs an EAGLE layer (--heads FOLDER or its safetensors file)");
        if (!Files.exists(path)) throw new ModelFormatException(path, "does not exist (give an EAGLE folder or its safetensors file)");
        Path weightsFile = weightsFile(path);
        Path dir = weightsFile.toAbsolutePath().getParent();
        Path configPath = dir.resolve(SafetensorsCheckpoint.CONFIG);
        if (!Files.isRegularFile(configPath))
            throw new ModelFormatException(configPath, "missing: an EAGLE layer needs its config.json beside " + weightsFile.getFileName());
        JsonObject json = SafetensorsCheckpoint.readJson(configPath);
        ModelConfig config = ModelConfig.fromHf(configPath, json);
        if (config.arch() != Arch.LLAMA && config.arch() != Arch.QWEN2)
            throw new ModelFormatException(configPath, "an EAGLE layer of model_type " + config.arch() + " is not supported (llama or qwen2)");
        if (config.slidingWindow() > 0) throw new ModelFormatException(configPath, "an EAGLE layer with a sliding window is not supported");
        if (config.nEmbd() != target.nEmbd())
            throw new ModelFormatException(configPath, "hidden_size " + config.nEmbd() + " is not the target's " + target.nEmbd());
        if (config.nVocab() != target.nVocab())
            throw new ModelFormatException(configPath, "vocab_size " + config.nVocab() + " is not the target's " + target.nVocab());
        SafetensorsFile file = SafetensorsFile.open(weightsFile);
        try {
            EagleLayerFile layer = new Reader(file, configPath, json, config).read();
            file = null; // owned by layer now
            return layer;
        } finally {
            if (file != null) file.close();
        }
    }

    private static Path weightsFile(Path path) {
        if (!Files.isDirectory(path)) {
            if (path.getFileName().toString().endsWith(".bin") || path.getFileName().toString().endsWith(".pt"))
                throw new ModelFormatException(path, "is a PyTorch pickle; convert it to safetensors (safetensors.torch.save_file("
                        + "torch.load(path), '" + FILE_NAME + "')) and put it beside its config.json");
            return path;
        }
        if (Files.isRegularFile(path.resolve(FILE_NAME))) return path.resolve(FILE_NAME);
        if (Files.isDirectory(path.resolve(FOLDER))) return weightsFile(path.resolve(FOLDER));
        if (Files.isRegularFile(path.resolve("pytorch_model.bin")))
            throw new ModelFormatException(path.resolve("pytorch_model.bin"), "is a PyTorch pickle; convert it to safetensors (safetensors.torch"
                    + ".save_file(torch.load(path), '" + FILE_NAME + "')) beside its config.json");
        throw new ModelFormatException(path, "holds no " + FILE_NAME + " (nor an " + FOLDER + " folder with one)");
    }

    public Path path() {
        return file.path();
    }

    /** The layer's shape: the target's hidden size and vocabulary, its own layers, heads and RoPE. */
    public ModelConfig config() {
        return config;
    }

    public boolean fcBias() {
        return fcBias;
    }

    public List<Weight> weights() {
        return weights;
    }

    /** The bytes of the layer's own weights (the target's embedding and LM head, which it reuses, are not counted). */
    public long weightBytes() {
        return weights.stream().mapToLong(w -> w.tensor().data().byteSize()).sum();
    }

    /** The target's weights the layer is handed too: its embedding and LM head. */
    private static List<ModelWeights.Weight> fromTarget(List<ModelWeights.Weight> targetWeights) {
        return targetWeights.stream().filter(w -> w.role() == WeightRole.TOKEN_EMBD || w.role() == WeightRole.OUTPUT).toList();
    }

    /**
     * What backend makes of the layer beyond its memory plan when {@link #load} hands it over with targetWeights
     * ({@link WeightsMemory#plan}). The cpu: its own Q8_0 matrices prepacked (or copied, with SPECULA_CPU_WEIGHTS=copy)
     * and its fc input scratch; the target's LM head is not among them, since the layer reads the target's placed form
     * of it. cuda: its input rows' device memory and the room its fc and bias take; it reads the target's device copies
     * of the embedding and LM head, so they add nothing.
     */
    public WeightsMemory memory(Backend backend, List<ModelWeights.Weight> targetWeights) {
        List<WeightsMemory.Planned> planned = new ArrayList<>(LoadedModel.planned(fromTarget(targetWeights)));
        for (Weight w : weights)
            planned.add(w.role() == null ? WeightsMemory.Planned.eagleFc(w.fcBias(), w.dtype()) : WeightsMemory.Planned.weight(w.role(), w.layer(), w.dtype()));
        return WeightsMemory.plan(backend.id(), config, true, planned);
    }

    /**
     * The layer as a native model on context, its weights read in place from this file (kept open as long as the
     * model), with the target's embedding and LM head (targetWeights: the target file's weights).
     */
    public NativeModel load(Context context, List<ModelWeights.Weight> targetWeights, DType kvType) {
        NativeModel model = NativeModel.create(context, config, kvType);
        try {
            model.makeEagle(fcBias);
            model.keepAlive(this);
            for (ModelWeights.Weight w : fromTarget(targetWeights)) model.setWeight(w.role(), 0, w.dtype(), w.data(), w.rows(), w.cols());
            for (Weight w : weights) {
                SafetensorsTensor t = w.tensor();
                if (w.role() == null) model.setEagleWeight(w.fcBias(), w.dtype(), t.data(), t.rows(), t.cols());
                else model.setWeight(w.role(), w.layer(), w.dtype(), t.data(), t.rows(), t.cols());
            }
            model.finish();
            return model;
        } catch (RuntimeException e) {
            model.close();
            throw e;
        }
    }

    @Override
    public void close() {
        file.close();
    }

    /** Reads the tensors, checking every name and shape against the ABI's shape rule. */
    private static final class Reader {
        private final SafetensorsFile file;
        private final Path configPath;
        private final JsonObject json;
        private final ModelConfig config;
        private final CheckedTensors tensors;
        private final List<Weight> weights = new ArrayList<>();

        Reader(SafetensorsFile file, Path configPath, JsonObject json, ModelConfig config) {
            this.file = file;
            this.configPath = configPath;
            this.json = json;
            this.config = config;
            this.tensors = new CheckedTensors(file, "an EAGLE layer takes");
        }

        EagleLayerFile read() {
            if (file.hasTensor("midlayer.self_attn.q_proj.weight") || file.hasTensor("d2t"))
                throw new ModelFormatException(file.path(), "is an EAGLE-3 layer (midlayer.*, d2t): only EAGLE-1's layout (fc, layers.N) is supported");
            boolean fcBias;
            JsonElement b = json.get("bias");
            if (b == null || b.isJsonNull()) fcBias = file.hasTensor("fc.bias");
            else if (b.isJsonPrimitive() && b.getAsJsonPrimitive().isBoolean()) fcBias = b.getAsBoolean();
            else throw new ModelFormatException(configPath, "\"bias\" is not true or false: " + b);
            long e = config.nEmbd();
            take("fc.weight", null, 0, false, new long[] {e, 2 * e}, true);
            if (fcBias) take("fc.bias", null, 0, true, new long[] {e}, true);
            for (int l = 0; l < config.nLayer(); l++) {
                String p = "layers." + l + ".";
                layerWeight(p + "input_layernorm.weight", WeightRole.ATTN_NORM, l, l > 0);
                layerWeight(p + "self_attn.q_proj.weight", WeightRole.ATTN_Q, l, true);
                layerWeight(p + "self_attn.k_proj.weight", WeightRole.ATTN_K, l, true);
                layerWeight(p + "self_attn.v_proj.weight", WeightRole.ATTN_V, l, true);
                layerWeight(p + "self_attn.o_proj.weight", WeightRole.ATTN_OUT, l, true);
                boolean biases = config.arch() == Arch.QWEN2;
                if (biases) {
                    layerWeight(p + "self_attn.q_proj.bias", WeightRole.ATTN_Q_BIAS, l, true);
                    layerWeight(p + "self_attn.k_proj.bias", WeightRole.ATTN_K_BIAS, l, true);
                    layerWeight(p + "self_attn.v_proj.bias", WeightRole.ATTN_V_BIAS, l, true);
                }
                layerWeight(p + "post_attention_layernorm.weight", WeightRole.FFN_NORM, l, true);
                layerWeight(p + "mlp.gate_proj.weight", WeightRole.FFN_GATE, l, true);
                layerWeight(p + "mlp.up_proj.weight", WeightRole.FFN_UP, l, true);
                layerWeight(p + "mlp.down_proj.weight", WeightRole.FFN_DOWN, l, true);
            }
            var embed = file.findTensor(EMBED);
            if (embed.isPresent()) { // EAGLE's frozen copy of the target's embedding: the target's own is used
                long[] want = {config.nVocab(), e};
                if (!Arrays.equals(embed.get().shape(), want))
                    throw new ModelFormatException(file.path(), "tensor " + EMBED + " has shape " + Arrays.toString(embed.get().shape())
                            + ", expected " + Arrays.toString(want) + " (the target's vocabulary and hidden size)");
                tensors.taken(EMBED);
            }
            tensors.refuseLeftovers("for an EAGLE layer of " + config.nLayer() + " decoder layer(s)");
            return new EagleLayerFile(file, config, fcBias, List.copyOf(weights));
        }

        private void layerWeight(String name, WeightRole role, int layer, boolean required) {
            WeightShape s = WeightShape.of(config, role, layer);
            take(name, role, layer, false, s.rows() == 1 ? new long[] {s.cols()} : new long[] {s.rows(), s.cols()}, required);
        }

        private void take(String name, WeightRole role, int layer, boolean fcBias, long[] expected, boolean required) {
            CheckedTensors.Taken t = tensors.take(name, expected, required,
                    "an EAGLE layer of " + config.nLayer() + " decoder layer(s)" + (fcBias ? " whose config has \"bias\": true" : ""),
                    "config.json: hidden_size " + config.nEmbd() + ", " + config.nHead() + " heads of " + config.headDim() + ", "
                            + config.nHeadKv() + " kv heads, intermediate_size " + config.nFf());
            if (t != null) weights.add(new Weight(role, layer, fcBias, t.dtype(), t.tensor()));
        }
    }
}
