// What every ABI entry point shares: handle liveness checks, and the wrapper that turns a
// failure or an escaping exception into a status plus a recorded message.
#pragma once

#include "internal.hpp"

#include <exception>
#include <new>

namespace specula {

// Records f as the thread's last error (and ctx's, when given) and returns its status.
spec_status record(const spec_context *ctx, const Failure &f);

// Every handle handed out and not yet destroyed, by address. The live_* checks look here before they read a handle's
// tag, so a handle used after its destroy is refused as not live without reading the memory it had (which the
// allocator may have given to something else). A handle's address reused by a newer handle of another kind fails the
// tag check; one reused by a handle of the same kind is that handle, as with any C API.
void handle_registry_add(const void *h);
void handle_registry_remove(const void *h);
bool handle_registry_has(const void *h);

// The two ends of a handle's life: handed to the caller (registered), and destroyed (unregistered, tagged dead and
// freed). An object freed on a create's failure path was never handed out; retiring it is the same.
template <typename H>
spec_status hand_out(H *h, H **out) {
    handle_registry_add(h);
    *out = h;
    return SPEC_OK;
}
template <typename H>
void retire(H *h) {
    handle_registry_remove(h);
    h->tag = TAG_DEAD;
    delete h;
}

// A registered handle's context and model are live too: their destroy is refused while it lives (SPEC_ERR_IN_USE),
// so the registry and the tag are the whole check, one lookup per handle.
inline bool live_context(const spec_context *ctx) { return ctx && handle_registry_has(ctx) && ctx->tag == TAG_CONTEXT; }
inline bool live_buffer(const spec_buffer *b) { return b && handle_registry_has(b) && b->tag == TAG_BUFFER; }
inline bool live_model(const spec_model *m) { return m && handle_registry_has(m) && m->tag == TAG_MODEL; }
inline bool live_kv(const spec_kv *kv) { return kv && handle_registry_has(kv) && kv->tag == TAG_KV; }
inline bool live_recycler(const spec_recycler *r) { return r && handle_registry_has(r) && r->tag == TAG_RECYCLER; }
inline bool live_heads(const spec_heads *h) { return h && handle_registry_has(h) && h->tag == TAG_HEADS; }

inline const char *handle_problem(const void *h) { return h ? "is not live (destroyed or foreign)" : "is null"; }

// "2 models, 3 KV caches and 1 buffer": what still lives, for a refused destroy; empty when nothing does.
std::string live_objects_list(int32_t buffers, int32_t models, int32_t kvs, int32_t recyclers, int32_t heads);
inline std::string live_objects_list(const LiveObjects &l) {
    return live_objects_list(l.buffers.load(), l.models.load(), l.kvs.load(), l.recyclers.load(), l.heads.load());
}

// Runs body (which returns a status and may fill a Failure), turning any escape into a status.
template <typename Body>
spec_status guarded(const spec_context *ctx, Body body) {
    Failure err{SPEC_OK, ""};
    spec_status st;
    try {
        st = body(err);
    } catch (const std::bad_alloc &) {
        return record(ctx, failure(SPEC_ERR_OUT_OF_MEMORY, "out of host memory"));
    } catch (const std::exception &e) {
        return record(ctx, failure(SPEC_ERR_INTERNAL, "internal error: %s", e.what()));
    } catch (...) {
        return record(ctx, failure(SPEC_ERR_INTERNAL, "internal error"));
    }
    if (st != SPEC_OK) {
        if (err.status == SPEC_OK) err.status = st;
        if (err.message.empty()) err.message = "unspecified error";
        return record(ctx, err);
    }
    return SPEC_OK;
}

} // namespace specula

#define FAIL(err, code, ...)                  \
    do {                                      \
        (err) = failure((code), __VA_ARGS__); \
        return (err).status;                  \
    } while (0)
