package dev.specula.server;

import com.google.gson.JsonNull;
import com.google.gson.JsonObject;

/**
 * A request the server answers with an error instead of a completion, in OpenAI's shape:
 * {@code {"error": {"message", "type", "param", "code"}}}. Thrown anywhere while a request is read or checked; the
 * handler turns it into the answer, and the server goes on serving.
 */
final class ApiError extends RuntimeException {
    static final String INVALID_REQUEST = "invalid_request_error";
    static final String AUTHENTICATION = "authentication_error";
    static final String NOT_FOUND = "not_found_error";
    static final String SERVER_ERROR = "server_error";
    static final String OVERLOADED = "overloaded_error";

    final int status;
    final String type;
    final String param;
    final String code;

    ApiError(int status, String type, String param, String code, String message) {
        super(message);
        this.status = status;
        this.type = type;
        this.param = param;
        this.code = code;
    }

    /** 400: the request names something the server cannot do as asked; param is the field at fault. */
    static ApiError invalid(String param, String message) {
        return new ApiError(400, INVALID_REQUEST, param, null, message);
    }

    static ApiError invalid(String param, String code, String message) {
        return new ApiError(400, INVALID_REQUEST, param, code, message);
    }

    JsonObject toJson() {
        JsonObject error = new JsonObject();
        error.addProperty("message", getMessage());
        error.addProperty("type", type);
        error.add("param", param == null ? JsonNull.INSTANCE : new com.google.gson.JsonPrimitive(param));
        error.add("code", code == null ? JsonNull.INSTANCE : new com.google.gson.JsonPrimitive(code));
        JsonObject root = new JsonObject();
        root.add("error", error);
        return root;
    }
}
