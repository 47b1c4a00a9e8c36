/*
 * common/tp_js.h: the JavaScript engine of Tyk's JSVM (TYK-COMPAT 23):
 * Debian's Duktape (ES5.1, as otto is ES5), one heap per process, one
 * global environment per API (Tyk has a VM per API), Tyk's core library
 * (TykJS, TykJsResponse) re-authored here, underscore.js as "_" from
 * Debian's libjs-underscore, and the natives of the JS API: log, rawlog,
 * b64enc/b64dec/rawb64enc/rawb64dec, TykMakeHttpRequest, TykGetKeyData and
 * TykSetKeyData (this gateway's own /tyk/keys, as Tyk's handleGetDetail and
 * doAddOrUpdate), and TykBatchRequest (its requests one after another
 * through TykMakeHttpRequest, written in the core library).
 *
 * Safety: every call has a deadline (jsvm_timeout), checked by Duktape's
 * executor (the build turns its timeout hook on), so a runaway loop ends
 * with an error and the heap stays usable; the heap's live bytes are
 * capped while a call runs (an allocation past the cap fails, which the
 * script sees as an error); scripts see no other native than those above.
 *
 * Requests never block: the worker's loop makes them (tp_fetch). A call
 * that makes one stops there (tp_js_call answers TP_JS_SUSPENDED with the
 * request, TykMakeHttpRequest's JSON, with "Self": true for the key
 * calls); once the answer is in, the caller runs the same call again from
 * its start with the answers so far in its tp_js_calls_t: the n-th request
 * of a run gets the n-th answer at once. log() lines of the runs before
 * are not repeated.
 *
 * Used by: the master (tp_js_check, at load) and the workers (tp_jsmw.c).
 * One thread per heap.
 */
#ifndef TP_JS_H
#define TP_JS_H

#include <stddef.h>
#include <stdint.h>

#include "duktape.h"

typedef struct tp_js_s tp_js_t;
typedef struct tp_js_ctx_s tp_js_ctx_t;

/* The answers of a call's TykMakeHttpRequest calls so far (JSON strings
 * as Tyk returns them), and the request the last run stopped at. */
typedef struct tp_js_calls_s {
    char **answer;
    int nanswer;
    int used;      /* answers given in the running run */
    int logged;    /* log() lines written by the runs so far */
    int log_seen;  /* ... and counted in the running one */
    char *pending; /* the TykMakeHttpRequest argument the run stopped at */
} tp_js_calls_t;
void tp_js_calls_free(tp_js_calls_t *c);

enum { TP_JS_OK = 0, TP_JS_ERROR = -1, TP_JS_SUSPENDED = 1 };

/* A heap whose live bytes stay under <heap_max> while a call runs. */
tp_js_t *tp_js_new(size_t heap_max);
void tp_js_free(tp_js_t *js);

/* A new global environment with the core library, "_" and then the
 * scripts of <files> (a JSON array of {"file", "src"}), run in order, each
 * with <timeout_ms>. A script that fails is logged (its file, line and
 * message, and <label>) and the others still load, as Tyk's LoadJSPaths.
 * NULL when the engine itself fails. */
tp_js_ctx_t *tp_js_ctx_new(tp_js_t *js, const char *label, const char *files_json,
                           int64_t timeout_ms);
void tp_js_ctx_free(tp_js_ctx_t *c);
/* The Duktape context to push a call's function and arguments on. */
duk_context *tp_js_ctx_duk(tp_js_ctx_t *c);
/* Is the API's TykJS.DoProcessRequest the one of this core library (plain
 * bodies and an object back), not one of a user's tyk_js_path (Tyk's: a
 * base64 body in, a JSON string back)? */
int tp_js_ctx_native_core(const tp_js_ctx_t *c);

/* Calls the function below <nargs> arguments on the context's stack (and
 * below its "this" too when <with_this>), by
 * <deadline_ms> (tp_js_now_ms clock); its value is left on the stack
 * (TP_JS_OK), or the reason goes to <err> ("<file>:<line>: <message>"
 * for a script error). <calls> may be NULL (no TykMakeHttpRequest). The
 * caller pops what it pushed. */
int tp_js_call(tp_js_ctx_t *c, int nargs, int with_this, int64_t deadline_ms, tp_js_calls_t *calls,
               char *err, size_t errlen);
int64_t tp_js_now_ms(void);
/* Replaces the value on top of the context's stack with a copy made of
 * plain data only (objects without a prototype, dense arrays, strings,
 * numbers, booleans, null), taken in a protected call with the deadline:
 * what a script returned can then be read without running its getters,
 * proxies or prototype (a throw there would be outside any protection).
 * TP_JS_OK, or TP_JS_ERROR with the reason (the value is then popped and
 * the error is on top). */
int tp_js_plain(tp_js_ctx_t *c, int64_t deadline_ms, char *err, size_t errlen);
/* Runs <fn> on the <nargs> values on top of the context's stack (they are
 * consumed) in a protected call with the deadline, for reading what a
 * script returned: a throw there (a getter, a proxy, a timeout) comes back
 * as TP_JS_ERROR with the reason. Nothing is left on the stack. */
int tp_js_safe(tp_js_ctx_t *c, duk_safe_call_function fn, void *udata, int nargs,
               int64_t deadline_ms, char *err, size_t errlen);

/* Compiles <src> as <file> (no run): 0, or -1 with "<file>:<line>:
 * <message>" in <err>. For the master's check at load. */
int tp_js_check(const char *file, const char *src, size_t len, char *err, size_t errlen);

/* Bytes the heap holds now (its allocator's count). */
size_t tp_js_heap_bytes(const tp_js_t *js);

#endif
