package dev.specula;

import dev.specula.engine.DraftPolicy;
import dev.specula.memory.MemoryBudget;
import dev.specula.model.DraftHeadsFile;
import dev.specula.model.EagleLayerFile;
import dev.specula.model.LoadedModel;
import dev.specula.model.ModelFile;
import dev.specula.model.ModelWeights;
import dev.specula.nativeapi.Backend;
import dev.specula.nativeapi.ModelShape;
import dev.specula.nativeapi.Recycler;
import dev.specula.nativeapi.WeightsMemory;
import dev.specula.policies.DraftHeadsPolicy;
import dev.specula.policies.DraftModelPolicy;
import dev.specula.policies.EagleDraftPolicy;
import dev.specula.policies.EarlyExitPolicy;
import dev.specula.policies.NoSpeculation;
import dev.specula.policies.PromptLookupPolicy;
import dev.specula.policies.RecyclingPolicy;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.function.Function;
import java.util.function.Supplier;

/**
 * The drafters an engine offers, by the names the command line uses. What each one is (its largest useful tree,
 * what it adds to the memory budget, how a request gets its policy) is said once, in {@link #parts()}.
 */
public enum Drafter {
    /** Plain decoding: every tree is a lone root. The only drafter that supports repetition penalty and min-p. */
    NONE("none"),
    /** Prompt lookup: continuations of earlier occurrences of the last tokens. Training-free, stateless. */
    PLD("pld"),
    /** Token Recycling: a static tree template over a matrix of candidate next tokens learned while decoding. */
    RECYCLING("recycling"),
    /** A small draft model with the target's tokenizer (SpecDec++ stopping); needs a draft model file. */
    DRAFT_MODEL("draft-model"),
    /** The target's own first layers as the drafter (DEL: the exit layer and draft length chosen per step). */
    EARLY_EXIT("early-exit"),
    /** Medusa heads over the target's final hidden state: independent heads, cartesian top-k trees; needs a heads file. */
    MEDUSA("medusa"),
    /** Hydra heads: each also reads the tokens drafted before it, sequential expansion; needs a heads file. */
    HYDRA("hydra"),
    /** An EAGLE draft layer extrapolating the target's features, sequential expansion; needs an EAGLE layer (--heads). */
    EAGLE("eagle");

    /** The engine's drafter unless told otherwise; a string so that option annotations can name it. */
    public static final String DEFAULT_NAME = "recycling";

    /**
     * The largest tree a chain drafter (pld, draft-model, early-exit) fills: the root and 16 drafted tokens,
     * draft-model's longest chain (pld's branches and early-exit's chains are shorter). A larger cap would only
     * let the adaptive budget measure tree sizes these drafters never reach.
     */
    static final int CHAIN_TREE_NODES = 1 + 16;

    /** Candidates per row of the recycling matrix. */
    static final int RECYCLER_K = Recycler.DEFAULT_K;

    private final String cliName;

    Drafter(String cliName) {
        this.cliName = cliName;
    }

    /** The command line's name, e.g. "draft-model". */
    public String cliName() {
        return cliName;
    }

    @Override
    public String toString() {
        return cliName;
    }

    /** The drafter named s (its command-line name, or the constant's); the error lists the choices. */
    public static Drafter parse(String s) {
        String n = s == null ? "" : s.trim().toLowerCase(Locale.ROOT).replace('_', '-');
        for (Drafter d : values()) if (d.cliName.equals(n)) return d;
        throw new IllegalArgumentException("unknown drafter '" + s + "'; choose one of " + choices());
    }

    /** "none, pld, recycling, draft-model, early-exit, medusa, hydra". */
    public static String choices() {
        return String.join(", ", Arrays.stream(values()).map(Drafter::cliName).toList());
    }

    /** Whether it drafts from trained heads over the target's hidden state, so an engine needs a heads file for it. */
    public boolean needsHeads() {
        return this == MEDUSA || this == HYDRA || this == EAGLE;
    }

    /** The largest tree, root included, worth allowing this drafter (capped further by the engine's tree size). */
    public int largestUsefulTree() {
        return parts().largestTree();
    }

    /** What a drafter's memory budget entry is computed from: the target's shape, the draft model file, positions, the backend. */
    record BudgetInputs(ModelShape target, Path draftModel, int context, Path heads, List<ModelWeights.Weight> targetWeights, Backend backend) {}

    /**
     * Everything one drafter means to the engine.
     *
     * @param largestTree the largest useful tree, root included
     * @param budget      what it adds to a memory budget, before anything is loaded
     * @param policies    given the engine's shared drafting state, the source of one policy per request
     */
    record Parts(int largestTree, Function<BudgetInputs, MemoryBudget.Drafting> budget,
                 Function<Drafters, Supplier<? extends DraftPolicy>> policies) {}

    /** The one place that says, per drafter, its tree, its memory and its policies. */
    Parts parts() {
        return switch (this) {
            case NONE -> new Parts(1, in -> MemoryBudget.Drafting.none(cliName), shared -> NoSpeculation::new);
            case PLD -> new Parts(CHAIN_TREE_NODES, in -> MemoryBudget.Drafting.none(cliName), shared -> PromptLookupPolicy::new);
            case RECYCLING -> new Parts(Recycler.Template.defaultTemplate().size(),
                    in -> new MemoryBudget.Drafting(cliName, RECYCLER_K, null, 0, 0, 0, 0),
                    shared -> () -> new RecyclingPolicy(shared.recycler(), Recycler.Template.defaultTemplate()));
            case DRAFT_MODEL -> new Parts(CHAIN_TREE_NODES, in -> {
                try (ModelFile file = ModelFile.open(Drafters.requireDraftModel(in.draftModel()))) {
                    return new MemoryBudget.Drafting(cliName, 0, file.config(), LoadedModel.weightBytes(file), in.context(),
                            DraftModelPolicy.deviceLogitsRows(), 0, 0, false, 0, 0, LoadedModel.cpuPrepackedBytes(file));
                }
            }, Drafters::draftModelPolicies);
            case EARLY_EXIT -> new Parts(CHAIN_TREE_NODES, in -> {
                var options = Drafters.earlyExitOptions(in.target().nLayer(), in.context());
                return new MemoryBudget.Drafting(cliName, 0, null, 0, 0, EarlyExitPolicy.deviceLogitsRows(options),
                        EarlyExitPolicy.deviceKvPositions(options));
            }, Drafters::earlyExitPolicies);
            case MEDUSA, HYDRA -> new Parts(DraftHeadsPolicy.LARGEST_TREE, in -> {
                try (DraftHeadsFile heads = DraftHeadsFile.open(in.heads(), headsLayout(), in.target().nEmbd(), in.target().nVocab())) {
                    return new MemoryBudget.Drafting(cliName, 0, null, 0, 0, DraftHeadsPolicy.deviceLogitsRows(heads.config().nHeads()), 0,
                            heads.weightBytes(), true);
                }
            }, shared -> shared.headsPolicies(this));
            case EAGLE -> new Parts(EagleDraftPolicy.LARGEST_TREE, in -> {
                try (EagleLayerFile layer = EagleLayerFile.open(in.heads(), in.target())) {
                    WeightsMemory made = layer.memory(in.backend(), in.targetWeights());
                    return new MemoryBudget.Drafting(cliName, 0, layer.config(), layer.weightBytes(), EagleDraftPolicy.kvPositions(in.context()),
                            EagleDraftPolicy.deviceLogitsRows(), 0, 0, true, made.eagleScratch(),
                            EagleDraftPolicy.featureRowBytes(layer.config().nEmbd()), made.placed());
                }
            }, Drafters::eaglePolicies);
        };
    }

    /** The heads file layout of a heads drafter. */
    DraftHeadsFile.Layout headsLayout() {
        return switch (this) {
            case MEDUSA -> DraftHeadsFile.Layout.MEDUSA;
            case HYDRA -> DraftHeadsFile.Layout.HYDRA;
            default -> throw new IllegalStateException(cliName + " reads no heads");
        };
    }
}
