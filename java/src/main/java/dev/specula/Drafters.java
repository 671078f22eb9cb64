package dev.specula;

import dev.specula.engine.DraftPolicy;
import dev.specula.model.DraftHeadsFile;
import dev.specula.model.EagleLayerFile;
import dev.specula.model.LoadedModel;
import dev.specula.nativeapi.NativeHeads;
import dev.specula.nativeapi.NativeModel;
import dev.specula.nativeapi.Recycler;
import dev.specula.policies.AcceptancePredictor;
import dev.specula.policies.DraftHeadsPolicy;
import dev.specula.policies.DraftModelPolicy;
import dev.specula.policies.EagleDraftPolicy;
import dev.specula.policies.EarlyExitPolicy;
import java.nio.file.Path;
import java.util.EnumMap;
import java.util.Map;
import java.util.function.Supplier;

/**
 * The drafting state of one engine that outlives requests (the recycling matrix, the draft model and its
 * acceptance predictor, early-exit estimates), made on first use and shared by every request. Thread-safe: each
 * piece is made once however many requests ask for it at the same time.
 */
final class Drafters implements AutoCloseable {
    private final LoadedModel target;
    private final int maxTreeNodes;
    private final boolean adaptive;
    private final Path draftModel;
    private final int context;
    private final Map<Drafter, Supplier<? extends DraftPolicy>> policies = new EnumMap<>(Drafter.class);
    private final Path heads;
    private final Map<DraftHeadsFile.Layout, DraftHeadsFile> headsFiles = new EnumMap<>(DraftHeadsFile.Layout.class);
    private final Map<DraftHeadsFile.Layout, NativeHeads> nativeHeads = new EnumMap<>(DraftHeadsFile.Layout.class);
    private Recycler recycler;
    private LoadedModel draft;
    private EagleLayerFile eagleFile;
    private NativeModel eagle;
    private boolean closed;
    private int draftModelOpens; // for the tests: the draft model is opened once, however many requests race for it

    /**
     * draftModel: the draft model's file for {@link Drafter#DRAFT_MODEL}; heads: the heads file (or folder) for
     * {@link Drafter#MEDUSA} and {@link Drafter#HYDRA}, or the EAGLE layer's for {@link Drafter#EAGLE} (null when there is none).
     */
    Drafters(LoadedModel target, int maxTreeNodes, boolean adaptive, Path draftModel, int context, Path heads) {
        this.heads = heads;
        this.target = target;
        this.maxTreeNodes = maxTreeNodes;
        this.adaptive = adaptive;
        this.draftModel = draftModel;
        this.context = context;
    }

    /** Where a drafter's per-request policies come from, and their trees. */
    record Source(Supplier<? extends DraftPolicy> policies, int maxTreeNodes, boolean adaptive) {}

    /**
     * A drafter's policy source, made once (opening the draft model, for instance) so that the policies themselves
     * can be made later, when a request starts.
     */
    Source source(Drafter drafter) {
        Supplier<? extends DraftPolicy> source;
        synchronized (this) {
            if (closed) throw new IllegalStateException("engine closed");
            source = policies.computeIfAbsent(drafter, d -> d.parts().policies().apply(this));
        }
        if (drafter == Drafter.NONE) return new Source(source, 1, false);
        return new Source(source, Math.min(maxTreeNodes, drafter.largestUsefulTree()), adaptive);
    }

    /** The recycling matrix shared by every request. */
    synchronized Recycler recycler() {
        if (recycler == null) {
            recycler = Recycler.create(target.model().context(), target.model().shape().nVocab(), Drafter.RECYCLER_K, Recycler.Fill.ZERO);
        }
        return recycler;
    }

    /** Opens the draft model (once) and makes its policies, which share one acceptance predictor. */
    synchronized Supplier<DraftModelPolicy> draftModelPolicies() {
        if (draft == null) {
            draft = LoadedModel.open(target.model().context(), requireDraftModel(draftModel));
            draftModelOpens++;
        }
        var options = adaptive ? DraftModelPolicy.Options.adaptive(new AcceptancePredictor(), context)
                : DraftModelPolicy.Options.fixed(4, context);
        return DraftModelPolicy.factory(target.model(), target.tokenizer(), draft.model(), draft.tokenizer(), options);
    }

    /** Opens the drafter's heads (once per layout) and makes per-request policies over those shared heads. */
    synchronized Supplier<DraftHeadsPolicy> headsPolicies(Drafter drafter) {
        DraftHeadsFile.Layout layout = drafter.headsLayout();
        NativeHeads loaded = nativeHeads.get(layout);
        if (loaded == null) {
            var shape = target.model().shape();
            DraftHeadsFile file = DraftHeadsFile.open(heads, layout, shape.nEmbd(), shape.nVocab());
            try {
                loaded = file.load(target.model());
                headsFiles.put(layout, file);
                nativeHeads.put(layout, loaded);
            } finally {
                if (loaded == null) file.close();
            }
        }
        return DraftHeadsPolicy.factory(drafter.cliName(), loaded);
    }

    /** Opens the EAGLE layer (once) over the target's embedding and LM head, and makes per-request policies over it. */
    synchronized Supplier<EagleDraftPolicy> eaglePolicies() {
        if (eagle == null) {
            EagleLayerFile file = EagleLayerFile.open(heads, target.model().shape());
            try {
                eagle = file.load(target.model().context(), target.file().weights(), LoadedModel.DEFAULT_KV_TYPE);
                eagleFile = file;
            } finally {
                if (eagle == null) file.close();
            }
        }
        return EagleDraftPolicy.factory(Drafter.EAGLE.cliName(), eagle, context);
    }

    synchronized int draftModelOpens() {
        return draftModelOpens;
    }

    Supplier<EarlyExitPolicy> earlyExitPolicies() {
        return EarlyExitPolicy.factory(target.model(), earlyExitOptions(target.model().shape().nLayer(), context));
    }

    static EarlyExitPolicy.Options earlyExitOptions(int nLayer, int context) {
        // Windowed shadow passes every 32 steps: exact ones keep every candidate's cache current, which
        // costs more than the drafts save on a CPU.
        var dynamic = EarlyExitPolicy.Options.dynamic(nLayer, context);
        return new EarlyExitPolicy.Options(dynamic.exitLayers(), dynamic.maxDraft(), 0, 32, 16, context);
    }

    static Path requireDraftModel(Path path) {
        if (path == null) throw new IllegalArgumentException("drafter draft-model needs a draft model file (the builder's draftModel, --draft-model FILE on the command line)");
        return path;
    }

    @Override
    public synchronized void close() {
        closed = true;
        if (recycler != null) recycler.close();
        nativeHeads.values().forEach(NativeHeads::close);
        headsFiles.values().forEach(DraftHeadsFile::close);
        if (draft != null) draft.close();
        if (eagle != null) eagle.close();
        if (eagleFile != null) eagleFile.close();
    }
}
