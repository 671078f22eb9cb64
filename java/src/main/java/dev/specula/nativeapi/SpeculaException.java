package dev.specula.nativeapi;

/** A failed native call: the ABI's status and the message the native core recorded for it. */
public final class SpeculaException extends RuntimeException {
    private static final long serialVersionUID = 1L;
    private final Status status;
    private final int code;

    public SpeculaException(int code, String message) {
        super(message + " [" + Status.of(code) + "]");
        this.status = Status.of(code);
        this.code = code;
    }

    public Status status() {
        return status;
    }

    public int code() {
        return code;
    }
}
