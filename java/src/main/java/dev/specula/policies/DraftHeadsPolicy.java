package dev.specula.policies;

import dev.specula.engine.DraftPolicy;
import dev.specula.engine.DraftTree;
import dev.specula.nativeapi.DeviceBuffer;
import dev.specula.nativeapi.LogitsSummary;
import dev.specula.nativeapi.NativeHeads;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.PriorityQueue;
import java.util.function.Supplier;

/**
 * Drafting from the target's own final hidden state with draft heads ({@link NativeHeads}): the state of the last
 * accepted node, whose LM head row chose the tree's root, is what every head reads.
 *
 * <ul>
 *   <li><b>Medusa</b> (independent heads): head d's top-k are the candidates at depth d + 1 under any node at depth d
 *   (cartesian candidates); the tree is the best-first set of those paths under the product of the heads'
 *   probabilities, so a confident head gets a deep chain and an unsure one a wide level.</li>
 *   <li><b>Hydra</b> (sequentially dependent heads): sequential expansion. Head d runs on the best {@link #BEAM}
 *   nodes of depth d (one call for them all), each row conditioned on its path's tokens, so its candidates depend on
 *   what was drafted before them; the tree is then the best-first set of every candidate found.</li>
 * </ul>
 *
 * Drafts are deterministic given the hidden state (draft probability 1, as for Token Recycling), so greedy and
 * sampled verification stay lossless. Until the first verification there is no hidden state and the policy
 * proposes the root alone. One instance per sequence (it keeps that sequence's hidden state); the heads may be
 * shared.
 */
public final class DraftHeadsPolicy implements DraftPolicy, AutoCloseable {
    /** Candidates per head output considered (the device summary's most). */
    static final int TOP_K = Math.min(8, LogitsSummary.MAX_K);
    /** Nodes per depth a Hydra head expands. */
    static final int BEAM = 4;

    private final String name;
    private final NativeHeads heads;
    private final int nEmbd, vocab;
    private final DeviceBuffer hidden; // the last accepted node's final hidden state
    private final DeviceBuffer logits; // [max(nHeads, BEAM)][vocab]
    private boolean haveHidden;

    public DraftHeadsPolicy(String name, NativeHeads heads) {
        this.name = name;
        this.heads = heads;
        this.nEmbd = heads.target().shape().nEmbd();
        this.vocab = heads.target().shape().nVocab();
        var ctx = heads.target().context();
        this.hidden = ctx.allocate((long) nEmbd * Float.BYTES);
        this.logits = ctx.allocate((long) Math.max(heads.config().nHeads(), BEAM) * vocab * Float.BYTES);
    }

    /** A fresh policy per request over shared heads. */
    public static Supplier<DraftHeadsPolicy> factory(String name, NativeHeads heads) {
        return () -> new DraftHeadsPolicy(name, heads);
    }

    /**
     * The largest tree worth drafting: the root and 24 candidates (the heads' top 8 at the first depth and the best
     * paths below). The adaptive budget shrinks it where verifying that many costs more than it brings.
     */
    public static final int LARGEST_TREE = 1 + 24;

    /** f32 rows of vocabulary logits each sequence's policy keeps on the device (for the memory budget). */
    public static int deviceLogitsRows(int nHeads) {
        return Math.max(nHeads, BEAM);
    }

    @Override
    public String name() {
        return name;
    }

    @Override
    public boolean readsFinalHidden() {
        return true;
    }

    /** The heads draft from the last accepted node's hidden state: one step shows it. */
    @Override
    public int observedStepsBeforeDrafting() {
        return 1;
    }

    @Override
    public void observeFinalHidden(DeviceBuffer rows, long offset) {
        hidden.copyFrom(rows, offset, 0, (long) nEmbd * Float.BYTES);
        haveHidden = true;
    }

    /** A candidate node: its token, its parent among the candidates (-1: the root), depth and path probability (EAGLE's too). */
    record Node(int token, int parent, int depth, double score) {}

    @Override
    public DraftTree propose(int[] history, int length, int maxTreeNodes) {
        int root = history[length - 1];
        if (!haveHidden || maxTreeNodes <= 1) return DraftTree.rootOnly(root);
        int nHeads = Math.min(heads.config().nHeads(), maxTreeNodes - 1);
        List<Node> nodes = heads.config().conditioned() ? hydraCandidates(root, nHeads) : medusaCandidates(nHeads, maxTreeNodes - 1);
        return bestFirst(root, nodes, maxTreeNodes - 1);
    }

    /** Every head on the hidden state, then cartesian paths best-first (at most budget of them). */
    private List<Node> medusaCandidates(int nHeads, int budget) {
        for (int d = 0; d < nHeads; d++) heads.forward(d, 1, hidden, 0, null, logits, (long) d * vocab * Float.BYTES);
        LogitsSummary[] top = LogitsSummary.summarize(logits, 0, nHeads, vocab, vocab, TOP_K);
        List<Node> out = new ArrayList<>();
        PriorityQueue<Node> queue = new PriorityQueue<>(Comparator.comparingDouble(Node::score).reversed());
        for (int r = 0; r < top[0].k(); r++) if (top[0].top()[r] >= 0) queue.add(new Node(top[0].top()[r], -1, 1, top[0].prob()[r]));
        while (!queue.isEmpty() && out.size() < budget) {
            Node n = queue.poll();
            out.add(n);
            int self = out.size() - 1;
            if (n.depth() < nHeads) {
                LogitsSummary s = top[n.depth()];
                for (int r = 0; r < s.k(); r++) if (s.top()[r] >= 0) queue.add(new Node(s.top()[r], self, n.depth() + 1, n.score() * s.prob()[r]));
            }
        }
        return out;
    }

    /** Head d on the best BEAM nodes of depth d, each conditioned on its path from the root. */
    private List<Node> hydraCandidates(int root, int nHeads) {
        List<Node> out = new ArrayList<>();
        List<Integer> frontier = List.of(-1); // -1: the root
        for (int d = 0; d < nHeads && !frontier.isEmpty(); d++) {
            int rows = frontier.size();
            int[] tokens = new int[rows * (d + 1)];
            for (int j = 0; j < rows; j++) {
                int at = j * (d + 1) + d; // the path's tokens, root first: fill from the node back to the root
                for (int i = frontier.get(j); i >= 0; i = out.get(i).parent()) tokens[at--] = out.get(i).token();
                tokens[at] = root;
            }
            heads.forward(d, rows, hidden, 0, tokens, logits, 0);
            LogitsSummary[] top = LogitsSummary.summarize(logits, 0, rows, vocab, vocab, TOP_K);
            int first = out.size();
            for (int j = 0; j < rows; j++) {
                int parent = frontier.get(j);
                double base = parent < 0 ? 1 : out.get(parent).score();
                for (int r = 0; r < top[j].k(); r++)
                    if (top[j].top()[r] >= 0) out.add(new Node(top[j].top()[r], parent, d + 1, base * top[j].prob()[r]));
            }
            Integer[] next = new Integer[out.size() - first];
            for (int i = 0; i < next.length; i++) next[i] = first + i;
            Arrays.sort(next, Comparator.comparingDouble((Integer i) -> out.get(i).score()).reversed());
            frontier = Arrays.asList(Arrays.copyOf(next, Math.min(BEAM, next.length)));
        }
        return out;
    }

    /**
     * The tree of the budget most probable candidates whose parents are in it too, breadth first (parents before
     * children). A path's probability never exceeds its parent's, so this is the best-first tree.
     */
    static DraftTree bestFirst(int root, List<Node> nodes, int budget) {
        Integer[] order = new Integer[nodes.size()];
        for (int i = 0; i < order.length; i++) order[i] = i;
        Arrays.sort(order, Comparator.comparingDouble((Integer i) -> nodes.get(i).score()).reversed()
                .thenComparingInt(i -> nodes.get(i).depth()).thenComparingInt(i -> i));
        boolean[] chosen = new boolean[nodes.size()];
        int count = 0;
        for (int i : order) {
            if (count == budget) break;
            Node n = nodes.get(i);
            if (n.parent() >= 0 && !chosen[n.parent()]) continue;
            chosen[i] = true;
            count++;
        }
        // breadth first: by depth, then candidate index (parents always have a smaller index)
        Integer[] picked = new Integer[count];
        int k = 0;
        for (int i = 0; i < nodes.size(); i++) if (chosen[i]) picked[k++] = i;
        Arrays.sort(picked, Comparator.comparingInt((Integer i) -> nodes.get(i).depth()).thenComparingInt(i -> i));
        int[] index = new int[nodes.size()];
        int[] tokens = new int[count + 1], parents = new int[count + 1];
        float[] probs = new float[count + 1];
        Arrays.fill(probs, 1f);
        tokens[0] = root;
        parents[0] = -1;
        for (int j = 0; j < count; j++) {
            Node n = nodes.get(picked[j]);
            index[picked[j]] = j + 1;
            tokens[j + 1] = n.token();
            parents[j + 1] = n.parent() < 0 ? 0 : index[n.parent()];
        }
        return new DraftTree(tokens, parents, probs);
    }

    @Override
    public void close() {
        hidden.close();
        logits.close();
    }
}
