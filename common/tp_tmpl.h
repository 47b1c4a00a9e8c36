/*
 * common/tp_tmpl.h: the subset of Go's text/template that Tyk's body
 * transforms (`transform`, `transform_response`) use, with Tyk's and
 * Sprig's functions, run over the JSON (or XML, see tp_xml.h) body.
 *
 * Used by: workers (a template is compiled when an API definition is
 * loaded and run per request); it takes no locks and keeps no globals, so
 * one compiled template may be run by many requests at once.
 *
 * The engine is exact in what it accepts and refuses the rest when the
 * template is compiled, naming the construct ("template", "define", an
 * unknown function, a method call ...), so a definition that would behave
 * differently from Tyk is rejected at load time instead of at run time.
 * Values print as Go's fmt %v prints what encoding/json decodes into an
 * interface{}: numbers are float64 (1, 1.5, 1e+21), arrays [a b], objects
 * map[a:1 b:2] with sorted keys, null <nil>, a missing key <no value>.
 *
 * Execution is bounded: output, temporary memory and steps have limits
 * (below), so a hostile template fails with an error instead of hanging
 * or exhausting the worker.
 */
#ifndef TP_TMPL_H
#define TP_TMPL_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "tp_buf.h"

#define TP_TMPL_MAX_OUTPUT (16u << 20) /* bytes one run may append */
#define TP_TMPL_MAX_MEM (32u << 20)    /* bytes of temporaries of one run */
#define TP_TMPL_MAX_STEPS 2000000u     /* nodes and commands one run evaluates */
#define TP_TMPL_MAX_NEST 100           /* nesting of blocks and parentheses */

typedef struct tp_tmpl_s tp_tmpl_t;

/* Compiles the template text <src> (<len> bytes). Returns a template the
 * caller frees with tp_tmpl_free, or NULL with <why> naming the
 * unsupported construct or the syntax error and its line, e.g.
 *   line 3: the "template" action is not supported */
tp_tmpl_t *tp_tmpl_compile(const char *src, size_t len, char *why, size_t whylen);

/* Runs <t> over <data> (borrowed; Go's "." and "$"), appending the output
 * to <out>. Returns 0, or -1 with <why> holding Go's run-time error where
 * it has one (e.g. "line 1: error calling index: index out of range: 5");
 * what was written before the error stays in <out>, as in Go. */
int tp_tmpl_exec(const tp_tmpl_t *t, const cJSON *data, tp_buf_t *out, char *why, size_t whylen);

void tp_tmpl_free(tp_tmpl_t *t);

#endif
