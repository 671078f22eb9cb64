package dev.specula.memory;

import dev.specula.engine.DecodeLoop;
import dev.specula.nativeapi.Backend;
import dev.specula.nativeapi.Context;
import dev.specula.nativeapi.DType;
import dev.specula.nativeapi.MemoryPlan;
import dev.specula.nativeapi.ModelShape;
import dev.specula.nativeapi.SpeculaException;
import dev.specula.nativeapi.TreeVerifier;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Locale;

/**
 * What a configuration takes of the backend's memory (SpecMemo), itemized before anything is allocated: the
 * native core's plan for the target (weights, KV caches for the whole context times the batch, forward scratch,
 * verification and recycling scratch, the recycling matrix), the draft model's own plan, and the device buffers
 * the engine and the drafters allocate themselves, sized by the same formulas they allocate with.
 *
 * <p>On the cpu backend the weights are read in place from the mapped model file: they are listed but not
 * counted, since the page cache can always drop and re-read them. {@link #fit} checks a budget against a
 * {@link Limit} and applies a {@link MemoryPolicy}.
 */
public final class MemoryBudget {
    /** The share of measured free memory held back: fragmentation, the runtime's own allocations, other users. */
    public static final double DEFAULT_SAFETY_MARGIN = 0.05;

    /** One component; counted false for memory that is a mapping of the model file rather than an allocation. */
    public record Item(String component, long bytes, boolean counted) {}

    /**
     * What a drafter adds beyond the target's own needs, per sequence unless said otherwise.
     *
     * @param recyclerK         candidates per row of a Token Recycling matrix (one, shared); 0 for none
     * @param draft             the draft model's shape, or null
     * @param draftWeightBytes  its weights' bytes as handed over
     * @param draftKvPositions  positions of each sequence's draft KV cache
     * @param logitsRows        f32 rows of vocabulary logits the drafter keeps on the device
     * @param targetKvPositions positions of KV caches of the target the drafter keeps (early-exit scratch caches)
     * @param headsWeightBytes  draft heads' weights as handed over (Medusa, Hydra); 0 for none
     * @param finalHidden       whether the verify steps also write every tree node's final hidden state (draft heads)
     * @param draftInputScratch bytes of draft forward scratch beyond the draft model's plan, once (an EAGLE layer's fc
     *                          input rows, [embd; feature] per row, as the backend plans them: WeightsMemory)
     * @param featureRowBytes   bytes of f32 feature rows each sequence's policy keeps on the device (EAGLE)
     * @param draftPrepackedBytes what the cpu backend places of the draft model's matrices at load, once, as it plans
     *                          them (WeightsMemory#placed: Q8_0 prepacked, SPECULA_CPU_WEIGHTS=copy's copy); cpu only
     */
    public record Drafting(String name, int recyclerK, ModelShape draft, long draftWeightBytes, int draftKvPositions,
                           int logitsRows, int targetKvPositions, long headsWeightBytes, boolean finalHidden,
                           long draftInputScratch, long featureRowBytes, long draftPrepackedBytes) {
        public Drafting(String name, int recyclerK, ModelShape draft, long draftWeightBytes, int draftKvPositions, int logitsRows,
                        int targetKvPositions, long headsWeightBytes, boolean finalHidden, long draftInputScratch, long featureRowBytes) {
            this(name, recyclerK, draft, draftWeightBytes, draftKvPositions, logitsRows, targetKvPositions, headsWeightBytes, finalHidden,
                    draftInputScratch, featureRowBytes, 0);
        }

        public Drafting(String name, int recyclerK, ModelShape draft, long draftWeightBytes, int draftKvPositions, int logitsRows,
                        int targetKvPositions) {
            this(name, recyclerK, draft, draftWeightBytes, draftKvPositions, logitsRows, targetKvPositions, 0, false);
        }

        public Drafting(String name, int recyclerK, ModelShape draft, long draftWeightBytes, int draftKvPositions, int logitsRows,
                        int targetKvPositions, long headsWeightBytes, boolean finalHidden) {
            this(name, recyclerK, draft, draftWeightBytes, draftKvPositions, logitsRows, targetKvPositions, headsWeightBytes, finalHidden, 0, 0);
        }

        /** A drafter with no buffers of its own (plain decoding, prompt lookup). */
        public static Drafting none(String name) {
            return new Drafting(name, 0, null, 0, 0, 0, 0);
        }
    }

    /**
     * A configuration to budget.
     *
     * @param backend       the backend whose memory is budgeted
     * @param contextLength KV positions per sequence
     * @param batch         sequences generating at once, each with its own KV cache
     * @param maxTreeNodes  the largest draft tree, root included (1: plain decoding)
     * @param targetPrepackedBytes what the cpu backend places of the target's matrices at load, as it plans them
     *                      (WeightsMemory#placed: Q8_0 prepacked, SPECULA_CPU_WEIGHTS=copy's copy); cpu only
     */
    public record Request(Backend backend, DType kvType, ModelShape target, long targetWeightBytes, int contextLength,
                          int batch, int maxTreeNodes, Drafting drafting, long targetPrepackedBytes) {
        /** A request whose target the cpu backend prepacks nothing of (no Q8_0 matrices). */
        public Request(Backend backend, DType kvType, ModelShape target, long targetWeightBytes, int contextLength,
                       int batch, int maxTreeNodes, Drafting drafting) {
            this(backend, kvType, target, targetWeightBytes, contextLength, batch, maxTreeNodes, drafting, 0);
        }

        public Request {
            if (contextLength < 1) throw new IllegalArgumentException("the context must be >= 1 positions, got " + contextLength);
            if (batch < 1) throw new IllegalArgumentException("the batch must be >= 1, got " + batch);
            if (maxTreeNodes < 1 || maxTreeNodes > TreeVerifier.MAX_TREE_NODES)
                throw new IllegalArgumentException("the tree size must be in 1.." + TreeVerifier.MAX_TREE_NODES + ", got " + maxTreeNodes);
            if (drafting == null) drafting = Drafting.none("none");
        }

        public Request withBatch(int b) {
            return new Request(backend, kvType, target, targetWeightBytes, contextLength, b, maxTreeNodes, drafting, targetPrepackedBytes);
        }

        public Request withMaxTreeNodes(int n) {
            return new Request(backend, kvType, target, targetWeightBytes, contextLength, batch, n, drafting, targetPrepackedBytes);
        }
    }

    /**
     * The memory a budget must fit: bytes usable (negative when unknown), what was measured or set, and where it
     * came from, in words.
     */
    public record Limit(long bytes, long measured, String source) {
        /** A limit the caller chose: used as is. */
        public static Limit explicit(long bytes) {
            if (bytes <= 0) throw new IllegalArgumentException("a memory limit must be > 0 bytes, got " + bytes);
            return new Limit(bytes, bytes, "memory limit");
        }

        /** Measured free memory, less a safety margin (a share in [0, 1)). */
        public static Limit measured(long free, String source, double margin) {
            if (!(margin >= 0 && margin < 1)) throw new IllegalArgumentException("the safety margin must be in [0, 1), got " + margin);
            return new Limit((long) (free * (1 - margin)), free,
                    margin == 0 ? source : source + " " + human(free) + " less a " + Math.round(margin * 100) + "% safety margin");
        }

        public static Limit unknown(String why) {
            return new Limit(-1, -1, why);
        }

        public boolean known() {
            return bytes >= 0;
        }

        public String describe() {
            return known() ? human(bytes) + " (" + source + ")" : "unknown: " + source;
        }
    }

    private final Request request;
    private final List<Item> items;
    private final long total;

    private MemoryBudget(Request request, List<Item> items) {
        this.request = request;
        this.items = List.copyOf(items);
        long t = 0;
        for (Item i : items) if (i.counted()) t += i.bytes();
        this.total = t;
    }

    /** Itemizes a configuration; native arithmetic only, so any backend compiled in can be planned on any machine. */
    /** The item of a model's matrices the cpu backend places at load (WeightsMemory#placed), after "target " or "draft ". */
    static final String PLACED = "matrices placed at load (Q8_0 prepacked for the int8 kernels; copied with SPECULA_CPU_WEIGHTS=copy)";

    public static MemoryBudget of(Request r) {
        List<Item> items = new ArrayList<>();
        boolean cpu = r.backend() == Backend.CPU;
        int b = r.batch(), n = r.maxTreeNodes(), vocab = r.target().nVocab();
        Drafting d = r.drafting();
        String kv = r.kvType().name().toLowerCase(Locale.ROOT);
        MemoryPlan target = MemoryPlan.compute(r.backend().id(), r.target(), r.kvType(), r.targetWeightBytes(), r.contextLength(), b, n, d.recyclerK());
        weights(items, "target weights", cpu, target.weights(), r.targetWeightBytes());
        if (cpu && r.targetPrepackedBytes() > 0)
            items.add(new Item("target " + PLACED, r.targetPrepackedBytes(), true));
        items.add(new Item(String.format(Locale.ROOT, "target KV caches (%d x %d positions, %s)", b, r.contextLength(), kv), target.kvCaches(), true));
        items.add(new Item("target forward scratch", target.modelScratch(), true));
        items.add(new Item(String.format(Locale.ROOT, "verify + recycling scratch (%d x %d nodes)", b, n), target.kernelScratch(), true));
        items.add(new Item(String.format(Locale.ROOT, "tree logits (%d x %d nodes x %d vocab, f32)", b, n, vocab),
                DecodeLoop.logitsBytes(b, n, vocab), true));
        if (d.recyclerK() > 0)
            items.add(new Item(String.format(Locale.ROOT, "recycling matrix (%d vocab x %d)", vocab, d.recyclerK()), target.recycler(), true));
        if (d.draft() != null) {
            MemoryPlan draft = MemoryPlan.compute(r.backend().id(), d.draft(), r.kvType(), d.draftWeightBytes(), d.draftKvPositions(), b, 0, 0);
            weights(items, "draft weights", cpu, draft.weights(), d.draftWeightBytes());
            if (cpu && d.draftPrepackedBytes() > 0)
                items.add(new Item("draft " + PLACED, d.draftPrepackedBytes(), true));
            items.add(new Item(String.format(Locale.ROOT, "draft KV caches (%d x %d positions, %s)", b, d.draftKvPositions(), kv), draft.kvCaches(), true));
            items.add(new Item("draft forward scratch", draft.modelScratch(), true));
            if (d.draftInputScratch() > 0) items.add(new Item(d.name() + " fc input scratch (f32)", d.draftInputScratch(), true));
        }
        if (d.featureRowBytes() > 0)
            items.add(new Item(String.format(Locale.ROOT, "%s feature rows (%d sequence%s, f32)", d.name(), b, b == 1 ? "" : "s"), (long) b * d.featureRowBytes(), true));
        if (d.targetKvPositions() > 0) {
            long bytes = MemoryPlan.compute(r.backend().id(), r.target(), r.kvType(), 0, d.targetKvPositions(), b, 0, 0).kvCaches();
            items.add(new Item(String.format(Locale.ROOT, "%s KV caches (%d x %d positions, %s)", d.name(), b, d.targetKvPositions(), kv), bytes, true));
        }
        if (d.headsWeightBytes() > 0) weights(items, d.name() + " heads weights", cpu, d.headsWeightBytes(), d.headsWeightBytes());
        if (d.finalHidden())
            items.add(new Item(String.format(Locale.ROOT, "final hidden states (%d x %d nodes x %d, f32)", b, n, r.target().nEmbd()),
                    DecodeLoop.finalHiddenBytes(b, n, r.target().nEmbd()) + (long) b * r.target().nEmbd() * Float.BYTES, true));
        if (d.logitsRows() > 0)
            items.add(new Item(String.format(Locale.ROOT, "%s logits (%d x %d rows x %d vocab, f32)", d.name(), b, d.logitsRows(), vocab),
                    (long) b * d.logitsRows() * vocab * Float.BYTES, true));
        return new MemoryBudget(r, items);
    }

    private static void weights(List<Item> items, String what, boolean cpu, long planned, long fileBytes) {
        if (cpu) items.add(new Item(what + " (mapped file, not allocated)", fileBytes, false));
        else items.add(new Item(what + " (device copy)", planned, true));
    }

    public Request request() {
        return request;
    }

    public List<Item> items() {
        return items;
    }

    /** The counted items' sum: what must fit. */
    public long total() {
        return total;
    }

    /** The items, largest first, counted ones only. */
    public List<Item> largest(int count) {
        return items.stream().filter(Item::counted).sorted(Comparator.comparingLong(Item::bytes).reversed()).limit(count).toList();
    }

    /** One line per item and the total, aligned, in human units. */
    public String table() {
        int width = "total".length();
        for (Item i : items) width = Math.max(width, i.component().length());
        StringBuilder sb = new StringBuilder();
        for (Item i : items) sb.append(String.format(Locale.ROOT, "  %-" + width + "s  %10s%n", i.component(), human(i.bytes())));
        sb.append(String.format(Locale.ROOT, "  %-" + width + "s  %10s%n", "total", human(total)));
        return sb.toString();
    }

    /**
     * A request checked against a limit: the budget that was chosen (the requested one, or a shrunk one) and the
     * limit; fits is false only when the limit is unknown (nothing could be checked).
     */
    public record Fit(MemoryBudget budget, Request requested, Limit limit, MemoryPolicy policy) {
        public boolean checked() {
            return limit.known();
        }

        public boolean shrunk() {
            return budget.request().batch() != requested.batch() || budget.request().maxTreeNodes() != requested.maxTreeNodes();
        }

        /** What was given up, e.g. "tree shrunk from 81 to 20 nodes"; empty when nothing was. */
        public String shrinkNote() {
            Request got = budget.request();
            if (got.maxTreeNodes() != requested.maxTreeNodes())
                return "tree shrunk from " + requested.maxTreeNodes() + " to " + got.maxTreeNodes() + " nodes";
            if (got.batch() != requested.batch())
                return "batch shrunk from " + requested.batch() + " to " + got.batch() + " sequences";
            return "";
        }

        /** One line for logs: the total against the limit, and any shrink. */
        public String describe() {
            String head = "memory budget: " + human(budget.total()) + " of " + limit.describe();
            return shrunk() ? head + "; " + shrinkNote() + " (memory policy " + policy.name().toLowerCase(Locale.ROOT).replace('_', '-') + ")" : head;
        }
    }

    /**
     * Checks r against limit. When it does not fit, SHRINK_TREE halves the tree size and SHRINK_BATCH the batch
     * (down to 1) until it does; REFUSE, or a policy that reached 1 without fitting, throws
     * {@link MemoryBudgetException}. An unknown limit checks nothing and keeps r.
     */
    public static Fit fit(Request r, MemoryPolicy policy, Limit limit) {
        MemoryBudget requested = of(r);
        if (!limit.known() || requested.total() <= limit.bytes()) return new Fit(requested, r, limit, policy);
        MemoryBudget tried = requested;
        if (policy == MemoryPolicy.SHRINK_TREE) {
            while (tried.request().maxTreeNodes() > 1) {
                tried = of(tried.request().withMaxTreeNodes(tried.request().maxTreeNodes() / 2));
                if (tried.total() <= limit.bytes()) return new Fit(tried, r, limit, policy);
            }
        } else if (policy == MemoryPolicy.SHRINK_BATCH) {
            while (tried.request().batch() > 1) {
                tried = of(tried.request().withBatch(tried.request().batch() / 2));
                if (tried.total() <= limit.bytes()) return new Fit(tried, r, limit, policy);
            }
        }
        throw new MemoryBudgetException(refusal(requested, tried, limit, policy), tried, limit);
    }

    private static String refusal(MemoryBudget requested, MemoryBudget tried, Limit limit, MemoryPolicy policy) {
        Request r = requested.request();
        StringBuilder sb = new StringBuilder(String.format(Locale.ROOT,
                "not enough memory on %s: %d x %d positions with trees of %d nodes needs %s, but %s is available",
                r.backend(), r.batch(), r.contextLength(), r.maxTreeNodes(), human(requested.total()), limit.describe()));
        sb.append("; largest items: ");
        List<Item> top = requested.largest(3);
        for (int i = 0; i < top.size(); i++) sb.append(i > 0 ? ", " : "").append(top.get(i).component()).append(' ').append(human(top.get(i).bytes()));
        if (tried != requested) {
            Request t = tried.request();
            sb.append(policy == MemoryPolicy.SHRINK_TREE
                    ? "; even trees of " + t.maxTreeNodes() + " node (plain decoding) need "
                    : "; even a batch of " + t.batch() + " needs ").append(human(tried.total()));
            sb.append(". Lower the context length or the batch, or raise the memory limit");
        } else {
            sb.append(". Lower the context length, the batch or the tree size, raise the memory limit, or choose the"
                    + " shrink-tree or shrink-batch memory policy");
        }
        return sb.toString();
    }

    /**
     * The memory a context may use: limitBytes when positive (explicit), else the device's free memory for cuda
     * or the host's available memory for cpu (the cpu backend allocates host memory), less margin.
     */
    public static Limit available(Context context, long limitBytes, double margin) {
        if (limitBytes > 0) return Limit.explicit(limitBytes);
        if (context.backend().equals("cpu")) return hostAvailable(margin);
        try {
            var info = context.deviceInfo();
            return Limit.measured(info.freeMemory(), context.backend() + " device " + info.index() + " free memory", margin);
        } catch (SpeculaException e) {
            return Limit.unknown(context.backend() + " device memory cannot be queried (" + e.getMessage() + ")");
        }
    }

    /** MemAvailable of /proc/meminfo, less margin; unknown where there is no such file. */
    public static Limit hostAvailable(double margin) {
        Path meminfo = Path.of("/proc/meminfo");
        try {
            for (String line : Files.readAllLines(meminfo)) {
                if (!line.startsWith("MemAvailable:")) continue;
                String[] f = line.substring("MemAvailable:".length()).trim().split("\\s+");
                long kib = Long.parseLong(f[0]);
                return Limit.measured(kib * 1024, "host available memory", margin);
            }
            return Limit.unknown(meminfo + " has no MemAvailable line");
        } catch (IOException | RuntimeException e) {
            return Limit.unknown("host memory cannot be read from " + meminfo + " (" + e.getMessage() + ")");
        }
    }

    /** Parses a size such as 512M, 2G, 1.5GiB, 4096K or 1000000 (bytes); binary units. */
    public static long parseSize(String s) {
        String t = s.trim().toUpperCase(Locale.ROOT);
        if (t.endsWith("IB")) t = t.substring(0, t.length() - 2);
        else if (t.endsWith("B")) t = t.substring(0, t.length() - 1);
        long unit = 1;
        if (!t.isEmpty()) {
            switch (t.charAt(t.length() - 1)) {
                case 'K' -> unit = 1L << 10;
                case 'M' -> unit = 1L << 20;
                case 'G' -> unit = 1L << 30;
                case 'T' -> unit = 1L << 40;
                default -> unit = 1;
            }
            if (unit != 1) t = t.substring(0, t.length() - 1);
        }
        try {
            double v = Double.parseDouble(t.trim());
            if (!(v > 0) || Double.isInfinite(v)) throw new NumberFormatException();
            return (long) (v * unit);
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("not a memory size: '" + s + "' (e.g. 512M, 2G, 1.5GiB)");
        }
    }

    /** Bytes for humans: B, KiB, MiB or GiB with one decimal. */
    public static String human(long bytes) {
        if (bytes < 1024) return bytes + " B";
        if (bytes < 1L << 20) return String.format(Locale.ROOT, "%.1f KiB", bytes / 1024.0);
        if (bytes < 1L << 30) return String.format(Locale.ROOT, "%.1f MiB", bytes / 1048576.0);
        return String.format(Locale.ROOT, "%.1f GiB", bytes / 1073741824.0);
    }
}
