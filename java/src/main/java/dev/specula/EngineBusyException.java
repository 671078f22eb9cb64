package dev.specula;

/**
 * The engine refused a request because its queue was full: as many requests as {@link SpeculaEngine.Builder#maxQueued}
 * allows were already waiting for a place in the batch. Nothing was started; the same request may be tried again
 * later. A server answers it with HTTP 429 (or 503), with {@link #retryAfterSeconds()} as a hint.
 */
public final class EngineBusyException extends RuntimeException {
    private final int queued;
    private final int running;

    public EngineBusyException(int queued, int running) {
        super("the engine is busy: " + queued + " requests are waiting (the queue's limit) and " + running
                + " are generating; try again later");
        this.queued = queued;
        this.running = running;
    }

    /** Requests waiting when this one was refused (the queue's limit). */
    public int queued() {
        return queued;
    }

    /** Requests generating when this one was refused. */
    public int running() {
        return running;
    }

    /** A suggested wait before retrying, in whole seconds. */
    public int retryAfterSeconds() {
        return 1;
    }
}
