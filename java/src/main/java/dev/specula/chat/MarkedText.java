package dev.specula.chat;

import java.util.BitSet;

/**
 * A template string some of whose characters came from the conversation (message content, tool definitions)
 * rather than from the template. The marks survive concatenation, slicing and stripping, so the rendered prompt
 * knows which characters a user typed: special-token text there stays plain text when tokenized. Operations that
 * rewrite text (upper, replace...) mark the whole result, which is safe: marking only limits where special
 * tokens may be recognised, it never changes how plain text is tokenized.
 */
final class MarkedText implements CharSequence, Comparable<MarkedText> {
    final String text;
    final BitSet marked;

    private MarkedText(String text, BitSet marked) {
        this.text = text;
        this.marked = marked;
    }

    /** Text wholly from the conversation. */
    static Object user(String text) {
        if (text.isEmpty()) return text;
        BitSet b = new BitSet(text.length());
        b.set(0, text.length());
        return new MarkedText(text, b);
    }

    /** A string value with the given marks; a plain String when nothing is marked. */
    static Object of(String text, BitSet marked) {
        if (marked.isEmpty()) return text;
        return new MarkedText(text, marked);
    }

    static boolean isString(Object o) {
        return o instanceof String || o instanceof MarkedText;
    }

    static BitSet marks(Object o) {
        return o instanceof MarkedText m ? m.marked : new BitSet();
    }

    /** The concatenation of string values, marks kept in place. */
    static Object concat(Object a, Object b) {
        String sa = a.toString(), sb = b.toString();
        if (!(a instanceof MarkedText) && !(b instanceof MarkedText)) return sa + sb;
        BitSet m = (BitSet) marks(a).clone();
        BitSet mb = marks(b);
        for (int i = mb.nextSetBit(0); i >= 0; i = mb.nextSetBit(i + 1)) m.set(sa.length() + i);
        return of(sa + sb, m);
    }

    /** A slice of a string value [from, to), marks kept. */
    static Object substring(Object s, int from, int to) {
        String t = s.toString().substring(from, to);
        if (!(s instanceof MarkedText m)) return t;
        return of(t, m.marked.get(from, to));
    }

    /** A rewritten string: wholly marked when the source had any mark. */
    static Object derived(Object source, String result) {
        return source instanceof MarkedText ? user(result) : result;
    }

    @Override
    public int length() {
        return text.length();
    }

    @Override
    public char charAt(int index) {
        return text.charAt(index);
    }

    @Override
    public CharSequence subSequence(int start, int end) {
        return text.subSequence(start, end);
    }

    @Override
    public String toString() {
        return text;
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof MarkedText m && m.text.equals(text);
    }

    @Override
    public int hashCode() {
        return text.hashCode();
    }

    @Override
    public int compareTo(MarkedText o) {
        return text.compareTo(o.text);
    }
}
