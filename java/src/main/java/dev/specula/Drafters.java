package dev.specula;

import dev.specula.engine.DraftPolicy;
import dev.specula.engine.GenerationRequest;
import dev.specula.engine.LoadedModel;
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
            Path path = draftPath;
            if (path == null) {
                Path demo = Path.of(System.getProperty("specula.home", ".")).resolve(DEMO_DRAFT);
                if (!Files.isRegularFile(demo)) throw new IllegalArgumentException("drafter draft-model needs --draft-model FILE");
                path = demo;
            }
            Context ctx = target.model().context();
            draft = LoadedModel.open(ctx, path);
            var options = adaptive ? DraftModelPolicy.Options.adaptive(new AcceptancePredictor(), context)
                    : DraftModelPolicy.Options.fixed(4, context);
            draftPolicies = DraftModelPolicy.factory(target.model(), target.tokenizer(), draft.model(), draft.tokenizer(), options);
        }
        return draftPolicies;
    }

    private Supplier<EarlyExitPolicy> earlyExitPolicies() {
        if (earlyExitPolicies == null) {
            // Windowed shadow passes every 32 steps: exact ones keep every candidate's cache current, which
            // costs more than the drafts save on a CPU.
            var dynamic = EarlyExitPolicy.Options.dynamic(target.model().shape().nLayer(), context);
            var options = new EarlyExitPolicy.Options(dynamic.exitLayers(), dynamic.maxDraft(), 0, 32, 16, context);
            earlyExitPolicies = EarlyExitPolicy.factory(target.model(), options);
        }
        return earlyExitPolicies;
    }

    /** The recycling matrix shared by every request of this command. */
    public Recycler recycler() {
        if (recycler == null) {
            recycler = Recycler.create(target.model().context(), target.model().shape().nVocab(), Recycler.DEFAULT_K, Recycler.Fill.ZERO);
        }
        return recycler;
    }

    @Override
    public void close() {
        if (recycler != null) recycler.close();
        if (draft != null) draft.close();
    }
}
