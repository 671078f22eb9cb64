package dev.specula.cli;

import dev.specula.model.HuggingFaceExport;
import dev.specula.model.LlamaFileType;
import dev.specula.model.TestModelMaker;
import dev.specula.tokenizer.VocabTrainer;
import java.nio.file.Path;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** Writes a GGUF model with seeded random weights, for tests and benchmarks. */
@Command(name = "make-test-model", sortOptions = false,
        description = "Write a GGUF model with seeded random weights (llama, qwen2, qwen3 or gemma3, any size) for tests and benchmarks, "
                + "and with --hf-out the same weights as a Hugging Face folder.")
final class MakeTestModelCommand implements Callable<Integer> {
    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Option(names = {"-h", "--help"}, usageHelp = true, description = "Show this help and exit.")
    boolean help;

    @Option(names = "--out", required = true, paramLabel = "FILE", description = "The GGUF file to write.")
    Path out;

    @Option(names = "--hf-out", paramLabel = "DIR",
            description = "Also write the same model as a Hugging Face folder (config.json, model.safetensors, tokenizer.json and "
                    + "tokenizer_config.json). F32/F16/BF16 tensors keep their type, quantized ones are written as F32.")
    Path hfOut;

    @Option(names = "--arch", paramLabel = "NAME", defaultValue = "llama", description = "Architecture: llama, qwen2, qwen3 (q/k norms) or gemma3 (q/k and post-block norms, GELU, local and global layers) (default: ${DEFAULT-VALUE}).")
    String arch;

    @Option(names = "--head-dim", paramLabel = "N", defaultValue = "0",
            description = "Head size (attention.key_length); 0 means dim / heads. Any even size for qwen3 and gemma3 (default: ${DEFAULT-VALUE}).")
    int headDim;

    @Option(names = "--sliding-window", paramLabel = "N", defaultValue = "0",
            description = "attention.sliding_window: a token sees the keys of the last N positions (every layer; gemma3: all but every sixth). "
                    + "0: none (gemma3: 512) (default: ${DEFAULT-VALUE}).")
    int slidingWindow;

    @Option(names = "--dim", paramLabel = "N", defaultValue = "64", description = "Embedding width n_embd (default: ${DEFAULT-VALUE}).")
    int dim;

    @Option(names = "--layers", paramLabel = "N", defaultValue = "2", description = "Number of transformer blocks (default: ${DEFAULT-VALUE}).")
    int layers;

    @Option(names = "--heads", paramLabel = "N", defaultValue = "4", description = "Attention heads; dim / heads is the head size (default: ${DEFAULT-VALUE}).")
    int heads;

    @Option(names = "--kv-heads", paramLabel = "N", defaultValue = "2", description = "Key/value heads, dividing --heads (default: ${DEFAULT-VALUE}).")
    int kvHeads;

    @Option(names = "--ff", paramLabel = "N", defaultValue = "192", description = "Feed-forward width n_ff (default: ${DEFAULT-VALUE}).")
    int ff;

    @Option(names = "--vocab", paramLabel = "N", defaultValue = "512", description = "Vocabulary size (default: ${DEFAULT-VALUE}).")
    int vocab;

    @Option(names = "--context", paramLabel = "N", defaultValue = "256", description = "Training context length n_ctx_train (default: ${DEFAULT-VALUE}).")
    int context;

    @Option(names = "--type", paramLabel = "TYPE", defaultValue = "F32",
            description = "llama.cpp file type: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K_S, Q3_K_M, Q4_K_S, Q4_K_M, "
                    + "Q5_K_S, Q5_K_M or Q6_K, each matrix typed as llama.cpp's quantizer types it (output.weight Q6_K, more bits "
                    + "on some attn_v and ffn_down layers, legacy fallbacks for rows not a multiple of 256); or Q3_K, Q4_K, Q5_K: "
                    + "every matrix that type. Norms and biases stay F32 (default: ${DEFAULT-VALUE}).")
    String type;

    @Option(names = "--pure", description = "Every matrix gets the file type's base type (llama-quantize --pure); dim and ff must fit its blocks.")
    boolean pure;

    private boolean tied;

    @Option(names = "--tied", description = "Share the token embedding as the output layer (no output.weight).")
    void tied(boolean ignored) {
        tied = true;
    }

    @Option(names = "--untied", description = "Write a separate output.weight (the default).")
    void untied(boolean ignored) {
        tied = false;
    }

    @Option(names = "--seed", paramLabel = "N", defaultValue = "42", description = "Seed of the weights and vocabulary; the same seed gives the same file (default: ${DEFAULT-VALUE}).")
    long seed;

    @Option(names = "--rope-theta", paramLabel = "THETA", defaultValue = "10000", description = "RoPE base frequency (default: ${DEFAULT-VALUE}).")
    float ropeTheta;

    @Option(names = "--tokenizer", paramLabel = "STYLE", defaultValue = "llama",
            description = "Tokenizer style of the vocabulary: llama (SentencePiece with byte fallback) or gpt2 (byte-level BPE) (default: ${DEFAULT-VALUE}).")
    String tokenizer;

    @Override
    public Integer call() {
        LlamaFileType.Choice choice;
        try {
            choice = LlamaFileType.parse(type);
        } catch (IllegalArgumentException e) {
            throw new CommandLine.ParameterException(spec.commandLine(), "invalid --type " + type + ": use " + LlamaFileType.names());
        }
        if (!tokenizer.equals("llama") && !tokenizer.equals("gpt2")) {
            throw new CommandLine.ParameterException(spec.commandLine(), "invalid --tokenizer " + tokenizer + ": use llama or gpt2");
        }
        TestModelMaker maker = new TestModelMaker().arch(arch).dim(dim).layers(layers).heads(heads).kvHeads(kvHeads).headDim(headDim).slidingWindow(slidingWindow)
                .ff(ff).vocab(vocab).context(context).fileType(choice.fileType(), pure || choice.pure()).tied(tied).seed(seed).ropeTheta(ropeTheta);
        try {
            maker.config();
            Map<String, Object> vocabulary = VocabTrainer.ggufMetadata(tokenizer, vocab, seed);
            if (hfOut != null && !HuggingFaceExport.ARCHS.contains(maker.config().arch())) {
                throw new IllegalArgumentException("--hf-out writes llama, qwen2, qwen3 and gemma3 models, not " + arch);
            }
            TestModelMaker.Summary summary = maker.tokenizer(vocabulary).write(out);
            spec.commandLine().getOut().println("wrote " + summary.describe());
            if (hfOut != null) spec.commandLine().getOut().println("wrote " + HuggingFaceExport.write(out, hfOut).getParent()
                    + " (config.json, model.safetensors, tokenizer.json, tokenizer_config.json)");
            spec.commandLine().getOut().flush();
            return 0;
        } catch (IllegalArgumentException | UnsupportedOperationException e) {
            throw new CommandLine.ParameterException(spec.commandLine(), e.getMessage());
        }
    }
}
