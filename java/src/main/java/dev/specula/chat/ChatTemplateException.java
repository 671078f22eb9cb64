package dev.specula.chat;

/**
 * A chat template could not be parsed or rendered: a syntax error, an error the template raised itself (its own
 * message, as {@code raise_exception} gave it), an undefined value used, or a render that ran past its time or
 * output bound. Also bad conversations (unknown roles, malformed messages).
 */
public class ChatTemplateException extends RuntimeException {
    public ChatTemplateException(String message) {
        super(message);
    }
}
