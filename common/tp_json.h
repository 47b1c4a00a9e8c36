/*
 * common/tp_json.h: strict JSON parsing with errors a person can act on.
 *
 * Used by: master (config, API definitions) and workers (later: sessions).
 * The parser reads the text as Go's encoding/json does (no comments, no
 * trailing commas, no leading zeros, no raw control characters in strings,
 * a lone UTF-16 surrogate becomes U+FFFD) and builds a cJSON tree, so that
 * a syntax error can be reported with its line, column, JSON path and what
 * was expected there, e.g.
 *   line 12, column 5, at $.storage: expected ',' or '}' after an object member
 * Duplicate members are kept in document order (readers take the last).
 */
#ifndef TP_JSON_H
#define TP_JSON_H

#include <stddef.h>

#include <cjson/cJSON.h>

#define TP_JSON_MAX_DEPTH 256

/* Set in the type of a number whose literal had a fraction or an exponent
 * ("8080.0", "1e3"): Go refuses those for integer fields. cJSON ignores
 * bits above its type byte. */
#define TP_JSON_FRACTION (1 << 12)

/* Parses <len> bytes of <text>. On success returns a tree the caller frees
 * with cJSON_Delete. On failure returns NULL and writes the reason into
 * <err> (always NUL-terminated). */
cJSON *tp_json_parse(const char *text, size_t len, char *err, size_t errlen);

/* Reads and parses a whole file; errors name the file. */
cJSON *tp_json_parse_file(const char *path, char *err, size_t errlen);

/* Appends one path segment to <path> (size <cap>): ".key" when the key is
 * a plain identifier, ["key"] otherwise, or "[index]" when <key> is NULL. */
void tp_json_path_push(char *path, size_t cap, const char *key, int index);

/* Member <key> of <obj> as Go's encoding/json finds it: an exact match
 * first, else the first case-insensitive match. NULL when absent. */
const cJSON *tp_json_get(const cJSON *obj, const char *key);

/* Sets member <key> of <obj> to the number <v>: the member Go reads
 * (tp_json_get) keeps its place and name, else a member is added. */
void tp_json_set_number(cJSON *obj, const char *key, double v);
/* The string member <key> of <obj> (tp_json_get), or NULL when it is
 * absent or not a string. */
const char *tp_json_str(const cJSON *obj, const char *key);

/* The JSON type name Go would use in an error ("string", "number", ...). */
const char *tp_json_type_name(const cJSON *item);

/* Appends <item> as Go's json.MarshalIndent(v, "", "  ") writes it: two
 * spaces per level, "key": value, empty containers as {} and []. */
struct tp_buf_s;
void tp_json_print_indent(struct tp_buf_s *b, const cJSON *item);

#endif
