package dev.specula;

import java.util.List;

/**
 * Streams text while watching for stop strings: text that could still become the start of a stop string is
 * held back, so a caller never sees part of one. Not thread-safe: one per generation.
 */
final class StopStrings {
    private final List<String> stops;
    private final StringBuilder held = new StringBuilder();
    private boolean stopped;

    StopStrings(List<String> stops) {
        for (String s : stops) if (s.isEmpty()) throw new IllegalArgumentException("a stop string may not be empty");
        this.stops = List.copyOf(stops);
    }

    /** Adds decoded text; returns what may be shown now. After a stop string, isStopped() is true. */
    String accept(String piece) {
        if (stopped) return "";
        held.append(piece);
        int cut = -1;
        for (String s : stops) {
            int at = held.indexOf(s);
            if (at >= 0 && (cut < 0 || at < cut)) cut = at;
        }
        if (cut >= 0) {
            stopped = true;
            String out = held.substring(0, cut);
            held.setLength(0);
            return out;
        }
        int keep = 0;
        for (String s : stops) {
            for (int len = Math.min(s.length() - 1, held.length()); len > keep; len--) {
                if (held.substring(held.length() - len).equals(s.substring(0, len))) {
                    keep = len;
                    break;
                }
            }
        }
        String out = held.substring(0, held.length() - keep);
        held.delete(0, held.length() - keep);
        return out;
    }

    /** The text still held back, at the end of a generation that did not stop on a stop string. */
    String flush() {
        String out = stopped ? "" : held.toString();
        held.setLength(0);
        return out;
    }

    boolean isStopped() {
        return stopped;
    }
}
