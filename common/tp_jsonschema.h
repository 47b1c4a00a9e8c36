/*
 * common/tp_jsonschema.h: JSON Schema validation as Tyk's validate_json does it.
 *
 * Used by: master (compiles the schemas of an API definition at load time)
 * and workers (validate request bodies against the compiled form). A compiled
 * schema is immutable after tp_jschema_compile, so workers may share one
 * without locking; it owns a private copy of the schema tree.
 *
 * Tyk validates with github.com/xeipuuv/gojsonschema v1.2.0 and joins the
 * ResultError strings ("<field>: <description>") with "; ". This module gives
 * the same strings in the same order where gojsonschema's order is defined
 * (Go map order is not: object members are visited in document order and
 * "properties" in schema order). Like gojsonschema with no "$schema", it runs
 * in "hybrid" mode: draft-4 keywords plus const, contains, propertyNames,
 * boolean schemas and numeric exclusiveMinimum/Maximum (draft 6), if/then/else
 * (draft 7). A "$schema" naming draft-04, -06 or -07 limits it to that draft.
 *
 * Refused at compile (gojsonschema would load or follow them): "$ref" to
 * anything but a local JSON pointer ("#", "#/definitions/x"; also the draft
 * meta-schemas gojsonschema has built in), a pattern that
 * cannot be translated exactly from Go RE2 to POSIX ERE (see
 * tp_jsonschema_re.c), and a cycle of "$ref"/allOf/anyOf/oneOf/not that never
 * descends into the document (gojsonschema overflows its stack on those).
 * "format" is accepted and ignored (gojsonschema checks email, date-time,
 * ipv4, ... and, in v1.2.0, fails any number or boolean given a known format;
 * a body that fails only a format check passes here).
 * Numbers are doubles: beyond 2^53 and in comparisons against 17+ digit
 * bounds they can differ from gojsonschema's big.Rat; multipleOf is exact for
 * decimal literals ("0.3" is a multiple of "0.1").
 */
#ifndef TP_JSONSCHEMA_H
#define TP_JSONSCHEMA_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "tp_buf.h"

/* Document nesting and $ref hops followed while validating one value; past
 * it the value fails with "Internal Error ..." instead of using more stack. */
#define TP_JSCHEMA_MAX_DEPTH 512

typedef struct tp_jschema_s tp_jschema_t;

/* Compiles <schema> (borrowed; the compiled form keeps its own copy). Returns
 * NULL with a reason in <why> (naming the keyword and its JSON path inside the
 * schema, e.g. "properties.age.minimum: expected a number") when the schema is
 * malformed or uses something not supported. Free with tp_jschema_free. */
tp_jschema_t *tp_jschema_compile(const cJSON *schema, char *why, size_t whylen);

/* Validates <doc> (borrowed). Returns 0 when valid, else the number of errors,
 * with the error strings gojsonschema would give, in its order, joined by
 * "; ", appended to <out>. */
int tp_jschema_validate(const tp_jschema_t *s, const cJSON *doc, tp_buf_t *out);

void tp_jschema_free(tp_jschema_t *s);

#endif
