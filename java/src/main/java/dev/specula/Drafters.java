package dev.specula;

import dev.specula.engine.DraftPolicy;
import dev.specula.engine.GenerationRequest;
import dev.specula.engine.LoadedModel;
import dev.specula.engine.MemoryBudget;
import dev.specula.model.ModelFile;
import dev.specula.nativeapi.ModelShape;
import dev.specula.nativeapi.Recycler;
import dev.specula.nativeapi.Context;
import dev.specula.policies.AcceptancePredictor;
import dev.specula.policies.DraftModelPolicy;
import dev.specula.policies.EarlyExitPolicy;
import dev.specula.policies.PromptLookupPolicy;
import dev.specula.policies.RecyclingPolicy;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.function.Supplier;

/**
 * The drafters the command line knows, by name, and the per-request policies they make. State that outlives a
 * request (the recycling matrix, the draft model and its acceptance predictor, early-exit estimates) lives
 * here, one per target model, for the life of the command.
 */
public final class Drafters implements AutoCloseable {
    public static final List<String> NAMES = List.of("none", "pld", "recycling", "draft-model", "early-exit");
    /** Beside the demo target: its trained draft model. */
    public static final String DEMO_DRAFT = "models/demo-draft.gguf";

    /** Candidates per row of the recycling matrix. */
    static final int RECYCLER_K = Recycler.DEFAULT_K;

    private final LoadedModel target;
    private final int maxNodes;
    private final boolean adaptive;
    private final Path draftPath;
    private final int context;
    private Recycler recycler;
    private LoadedModel draft;
    private Supplier<DraftModelPolicy> draftPolicies;
    private Supplier<EarlyExitPolicy> earlyExitPolicies;

    /** draftPath: the draft model for "draft-model" (null: the demo draft when there is one). */
    public Drafters(LoadedModel target, int maxNodes, boolean adaptive, Path draftPath, int context) {
        this.target = target;
        this.maxNodes = maxNodes;
        this.adaptive = adaptive;
        this.draftPath = draftPath;
        this.context = context;
    }

    public Drafters(LoadedModel target, int maxNodes, boolean adaptive) {
        this(target, maxNodes, adaptive, null, 4096);
    }

    /** The speculation for one request with this drafter, or null for plain decoding ("none"). */
    public GenerationRequest.Speculation speculation(String name) {
        Supplier<? extends DraftPolicy> policy = switch (name) {
            case "none" -> null;
            case "pld" -> PromptLookupPolicy::new;
            case "recycling" -> () -> new RecyclingPolicy(recycler(), Recycler.Template.defaultTemplate());
            case "draft-model" -> draftPolicies();
            case "early-exit" -> earlyExitPolicies();
            default -> throw new IllegalArgumentException("unknown drafter '" + name + "'; choose one of " + NAMES);
        };
        if (policy == null) return null;
        int nodes = name.equals("recycling") ? Math.min(maxNodes, Recycler.Template.defaultTemplate().size()) : Math.min(maxNodes, 17);
        return new GenerationRequest.Speculation(policy.get(), nodes, adaptive);
    }

    private Supplier<DraftModelPolicy> draftPolicies() {
        if (draftPolicies == null) {
            Context ctx = target.model().context();
            draft = LoadedModel.open(ctx, draftPath(draftPath));
            var options = adaptive ? DraftModelPolicy.Options.adaptive(new AcceptancePredictor(), context)
                    : DraftModelPolicy.Options.fixed(4, context);
            draftPolicies = DraftModelPolicy.factory(target.model(), target.tokenizer(), draft.model(), draft.tokenizer(), options);
        }
        return draftPolicies;
    }

    /** The draft model's file: path, or the demo draft when path is null and there is one. */
    static Path draftPath(Path path) {
        if (path != null) return path;
        Path demo = Path.of(System.getProperty("specula.home", ".")).resolve(DEMO_DRAFT);
        if (!Files.isRegularFile(demo)) throw new IllegalArgumentException("drafter draft-model needs --draft-model FILE");
        return demo;
    }

    private Supplier<EarlyExitPolicy> earlyExitPolicies() {
        if (earlyExitPolicies == null) earlyExitPolicies = EarlyExitPolicy.factory(target.model(), earlyExitOptions(target.model().shape().nLayer(), context));
        return earlyExitPolicies;
    }

    private static EarlyExitPolicy.Options earlyExitOptions(int nLayer, int context) {
        // Windowed shadow passes every 32 steps: exact ones keep every candidate's cache current, which
        // costs more than the drafts save on a CPU.
        var dynamic = EarlyExitPolicy.Options.dynamic(nLayer, context);
        return new EarlyExitPolicy.Options(dynamic.exitLayers(), dynamic.maxDraft(), 0, 32, 16, context);
    }

    /**
     * What the named drafter adds to a memory budget, per sequence of context positions, before anything is
     * loaded: the recycling matrix, the draft model (whose file is opened to read its shape and weight sizes) and
     * its caches, or the early-exit buffers. draftPath as for the constructor.
     */
    public static MemoryBudget.Drafting drafting(String name, ModelShape target, Path draftPath, int context) {
        return switch (name) {
            case "none", "pld" -> MemoryBudget.Drafting.none(name);
            case "recycling" -> new MemoryBudget.Drafting(name, RECYCLER_K, null, 0, 0, 0, 0);
            case "draft-model" -> {
                try (ModelFile file = ModelFile.open(draftPath(draftPath))) {
                    yield new MemoryBudget.Drafting(name, 0, file.config(), LoadedModel.weightBytes(file), context,
                            DraftModelPolicy.deviceLogitsRows(), 0);
                }
            }
            case "early-exit" -> {
                var options = earlyExitOptions(target.nLayer(), context);
                yield new MemoryBudget.Drafting(name, 0, null, 0, 0, EarlyExitPolicy.deviceLogitsRows(options),
                        EarlyExitPolicy.deviceKvPositions(options));
            }
            default -> throw new IllegalArgumentException("unknown drafter '" + name + "'; choose one of " + NAMES);
        };
    }

    /**
     * The memory budget request of a target file (opened, nothing loaded) with the named drafter on backend:
     * batch sequences of context positions (at most the model's training context, as generators cap it) with
     * trees of up to treeNodes nodes, KV caches of {@link LoadedModel#DEFAULT_KV_TYPE}.
     */
    public static MemoryBudget.Request budgetRequest(String backend, ModelFile target, String drafter, Path draftPath, int context,
                                                     int batch, int treeNodes) {
        int positions = Math.min(context, target.config().nCtxTrain());
        return new MemoryBudget.Request(backend, LoadedModel.DEFAULT_KV_TYPE, target.config(), LoadedModel.weightBytes(target),
                positions, batch, treeNodes, drafting(drafter, target.config(), draftPath, positions));
    }

    /** The recycling matrix shared by every request of this command. */
    public Recycler recycler() {
        if (recycler == null) {
            recycler = Recycler.create(target.model().context(), target.model().shape().nVocab(), RECYCLER_K, Recycler.Fill.ZERO);
        }
        return recycler;
    }

    @Override
    public void close() {
        if (recycler != null) recycler.close();
        if (draft != null) draft.close();
    }
}
