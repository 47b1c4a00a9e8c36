/*
 * common/tp_jsonschema_int.h: the compiled form shared by the files of the
 * JSON Schema module (tp_jsonschema.c compiles, tp_jsonschema_check.c
 * validates, tp_jsonschema_re.c translates patterns, tp_jsonschema_json.c
 * handles values as Go does). Nothing outside the module includes it.
 *
 * Every node is owned by the tp_jschema_t's node list and freed with it; the
 * strings a node borrows (property names, required names) point into the
 * schema copy the tp_jschema_t owns.
 */
#ifndef TP_JSONSCHEMA_INT_H
#define TP_JSONSCHEMA_INT_H

#include <regex.h>

#include "tp_jsonschema.h"

/* Bits of tp_jschema__node_t.types, in gojsonschema's type-name order. */
enum {
    TP_JS_ARRAY = 1 << 0,
    TP_JS_BOOLEAN = 1 << 1,
    TP_JS_INTEGER = 1 << 2,
    TP_JS_NUMBER = 1 << 3,
    TP_JS_NULL = 1 << 4,
    TP_JS_OBJECT = 1 << 5,
    TP_JS_STRING = 1 << 6,
};

/* additionalItems / additionalProperties: absent, false, or a schema. */
enum { TP_JS_ADD_ANY, TP_JS_ADD_NONE, TP_JS_ADD_SCHEMA };

typedef struct tp_jschema__node_s tp_jschema__node_t;

typedef struct tp_jschema__prop_s {
    const char *name;
    tp_jschema__node_t *schema;
} tp_jschema__prop_t;

typedef struct tp_jschema__pattern_s {
    char *src; /* the pattern as written, for messages */
    regex_t re;
} tp_jschema__pattern_t;

typedef struct tp_jschema__patprop_s {
    tp_jschema__pattern_t pat;
    tp_jschema__node_t *schema;
} tp_jschema__patprop_t;

typedef struct tp_jschema__dep_s {
    const char *name;
    tp_jschema__node_t *schema; /* NULL: the property-list form */
    const char **props;
    int nprops;
} tp_jschema__dep_t;

typedef struct tp_jschema__list_s {
    tp_jschema__node_t **v;
    int n;
} tp_jschema__list_t;

struct tp_jschema__node_s {
    const cJSON *src;
    char *path;               /* where it is in the schema, for compile errors */
    int pass;                 /* -1: an object schema; 0/1: the boolean schema false/true */
    int mark;                 /* cycle search state */
    tp_jschema__node_t *next; /* the owner's list of every node */
    const char *ref_text;
    tp_jschema__node_t *ref;

    unsigned types;
    char *types_str; /* "string" or "[string,null]" as in the error text */
    const char *type_order[7];

    int has_multiple, has_max, has_xmax, has_min, has_xmin;
    double multiple, max, xmax, min, xmin;

    long min_len, max_len; /* -1 when absent */
    tp_jschema__pattern_t *pattern;

    long min_items, max_items;
    int unique;
    tp_jschema__list_t items;
    int items_single;
    int add_items;
    tp_jschema__node_t *add_items_schema;
    tp_jschema__node_t *contains;

    long min_props, max_props;
    const char **required;
    int nrequired;
    tp_jschema__prop_t *props;
    int nprops;
    tp_jschema__patprop_t *patprops;
    int npatprops;
    int add_props;
    tp_jschema__node_t *add_props_schema;
    tp_jschema__node_t *prop_names;
    tp_jschema__dep_t *deps;
    int ndeps;

    char *const_json; /* NULL when absent */
    char **enum_json;
    int nenum;
    char *enum_allowed; /* the enum joined by ", " for the error text */

    tp_jschema__list_t all_of, any_of, one_of;
    tp_jschema__node_t *not_;
    tp_jschema__node_t *if_, *then_, *else_;
};

struct tp_jschema_s {
    cJSON *copy;
    tp_jschema__node_t *root;
    tp_jschema__node_t *nodes;
};

/* Translates Go RE2 <pattern> to POSIX ERE and compiles it into <p> (which
 * then owns a copy of the source; free with tp_jschema__re_free). Returns 0,
 * or -1 with the reason in <why>. */
int tp_jschema__re_compile(tp_jschema__pattern_t *p, const char *pattern, char *why, size_t whylen);
void tp_jschema__re_free(tp_jschema__pattern_t *p);
/* Does <s> contain a match, as Go's regexp.MatchString? */
int tp_jschema__re_match(const tp_jschema__pattern_t *p, const char *s);

/* A JSON object seen as the Go map gojsonschema decodes it into: the last of
 * duplicate keys wins. <live> keeps document order, <sorted> is for lookups. */
typedef struct tp_jschema__objv_s {
    const cJSON **live;
    const cJSON **sorted;
    int n;
} tp_jschema__objv_t;

/* Borrows <obj>; free with tp_jschema__objv_free. */
void tp_jschema__objv_init(tp_jschema__objv_t *o, const cJSON *obj);
/* The member named <key>, or NULL. */
const cJSON *tp_jschema__objv_get(const tp_jschema__objv_t *o, const char *key);
void tp_jschema__objv_free(tp_jschema__objv_t *o);

/* Is <x> a multiple of <m> (> 0), both read as the decimals they print as?
 * That is how big.Rat sees the schema's and the body's literals. */
int tp_jschema__is_multiple(double x, double m);

/* Appends <item> as gojsonschema compares and prints enum and const values:
 * Go's json.Marshal of the value decoded into interface{} (numbers as
 * float64, object keys sorted, the last of duplicate keys, HTML-escaped). */
void tp_jschema__marshal(tp_buf_t *b, const cJSON *item);

/* Appends <v> as gojsonschema prints a bound: fmt's %v of a big.Float, the
 * shortest digits that read back, %e form below 1e-4 or from 1e+06. */
void tp_jschema__put_num(tp_buf_t *b, double v);

/* The shortest decimal digits of <v> that read back to it, as Go's decimal
 * type holds them: <v> = 0.<digits> * 10^*dp. Returns the digit count. */
int tp_jschema__digits(double v, char digits[20], int *dp);

#endif
