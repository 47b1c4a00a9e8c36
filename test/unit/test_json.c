/* test/unit/test_json.c: the strict JSON scanner, its error texts and JSON paths. */
#include <stdlib.h>

#include "tp_json.h"
#include "tp_test.h"

/* Parses <text>; returns the error message, or "(ok)" when it parsed. */
static const char *perr(const char *text)
{
    static char err[1024];
    err[0] = '\0';
    cJSON *root = tp_json_parse(text, strlen(text), err, sizeof(err));
    if (root != NULL) {
        cJSON_Delete(root);
        return "(ok)";
    }
    return err;
}

TP_TEST(parse_valid_documents)
{
    char err[256];
    const char *text = " {\n\t\"a\": [1, -2.5, 3e2, 0, -0, 1E-2, 0.5e+1],\r\n"
                       "  \"b\": {\"c\": \"x\\\"y\\\\z\\/\\b\\f\\n\\r\\t\\u00e9\"},\n"
                       "  \"t\": true, \"f\": false, \"n\": null, \"e\": {}, \"l\": []\n} \n";
    cJSON *root = tp_json_parse(text, strlen(text), err, sizeof(err));
    CHECK(root != NULL);
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(root, "a");
    int n = cJSON_GetArraySize(a);
    double a1 = cJSON_GetArrayItem(a, 1)->valuedouble;
    double a2 = cJSON_GetArrayItem(a, 2)->valuedouble;
    const cJSON *c =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "b"), "c");
    char cval[64];
    snprintf(cval, sizeof(cval), "%s", cJSON_IsString(c) ? c->valuestring : "(not a string)");
    int t = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "t"));
    int f = cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(root, "f"));
    int nul = cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(root, "n"));
    cJSON_Delete(root);
    CHECK_INT(n, 7);
    CHECK(a1 == -2.5);
    CHECK(a2 == 300);
    CHECK_STR(cval, "x\"y\\z/\b\f\n\r\t\xc3\xa9");
    CHECK(t && f && nul);
}

TP_TEST(parse_top_level_scalars)
{
    CHECK_STR(perr("42"), "(ok)");
    CHECK_STR(perr(" \"s\" "), "(ok)");
    CHECK_STR(perr("true"), "(ok)");
    CHECK_STR(perr("false"), "(ok)");
    CHECK_STR(perr("null"), "(ok)");
    CHECK_STR(perr("[]"), "(ok)");
    CHECK_STR(perr("-0.5e+3"), "(ok)");
}

/* Only the first <len> bytes count: a NUL-free window into a larger buffer. */
TP_TEST(parse_respects_length)
{
    char err[256];
    const char *text = "{\"a\": 1}garbage";
    cJSON *root = tp_json_parse(text, 8, err, sizeof(err));
    CHECK(root != NULL);
    cJSON_Delete(root);
    CHECK(tp_json_parse(text, 7, err, sizeof(err)) == NULL);
    CHECK_CONTAINS(err, "line 1, column 8");
}

TP_TEST(trailing_commas)
{
    CHECK_STR(perr("{\"a\": 1,}"), "line 1, column 9, at $.a: expected a '\"' starting the next "
                                   "member name (no trailing commas)");
    CHECK_STR(perr("[1, 2,]"),
              "line 1, column 7, at $[2]: expected a value (string, number, object, array, "
              "true, false or null)");
    CHECK_STR(perr("{\"storage\": {\"port\": 6379,\n}}"),
              "line 2, column 1, at $.storage.port: expected a '\"' starting the next member "
              "name (no trailing commas)");
}

TP_TEST(missing_colon_and_comma)
{
    CHECK_STR(perr("{\"a\" 1}"), "line 1, column 6, at $.a: expected ':' after the member name");
    CHECK_STR(perr("{\"a\": 1 \"b\": 2}"),
              "line 1, column 9, at $.a: expected ',' or '}' after an object member");
    CHECK_STR(perr("[1 2]"),
              "line 1, column 4, at $[0]: expected ',' or ']' after an array element");
    CHECK_STR(perr("{,}"), "line 1, column 2, at $: expected a '\"' starting a member name or '}'");
    CHECK_STR(perr("{a: 1}"),
              "line 1, column 2, at $: expected a '\"' starting a member name or '}'");
    CHECK_STR(perr("{'a': 1}"),
              "line 1, column 2, at $: expected a '\"' starting a member name or '}'");
}

TP_TEST(string_errors)
{
    CHECK_STR(perr("{\"a\": \"abc"),
              "line 1, column 7, at $.a: expected a closing '\"' (unterminated string)");
    CHECK_STR(perr("{\"a\": \"x\ty\"}"),
              "line 1, column 9, at $.a: expected no raw control character inside a string "
              "(escape it)");
    CHECK_CONTAINS(perr("[\"line\nbreak\"]"), "line 1, column 7, at $[0]: expected no raw control");
    CHECK_CONTAINS(perr("{\"a\": \"\\x\"}"), "line 1, column 9, at $.a: expected a valid escape");
    CHECK_CONTAINS(perr("\"\\'\""), "expected a valid escape");
    CHECK_STR(perr("\"\\u12G4\""), "line 1, column 3, at $: expected four hex digits after \\u");
    CHECK_STR(perr("\"\\u12\""), "line 1, column 3, at $: expected four hex digits after \\u");
    CHECK_CONTAINS(perr("\"\\"), "unterminated string");
    CHECK_STR(perr("\"\\u00E9\\uABcd\""), "(ok)");
}

/* Go's decoder accepts a lone UTF-16 surrogate escape (it becomes U+FFFD). */
TP_TEST(lone_surrogate_escape_accepted_like_go)
{
    CHECK_STR(perr("{\"a\": \"\\ud800\"}"), "(ok)");
    CHECK_STR(perr("{\"a\": \"x\\udc00y\"}"), "(ok)");
}

TP_TEST(number_errors)
{
    const char *value = "expected a value (string, number, object, array, true, false or null)";
    char want[256];
    snprintf(want, sizeof(want), "line 1, column 1, at $: %s", value);
    CHECK_STR(perr("+1"), want);
    CHECK_STR(perr(".5"), want);
    CHECK_STR(perr("-"), want);
    CHECK_STR(perr("- 1"), want);
    CHECK_STR(perr("1."), "line 1, column 3, at $: expected a digit after the decimal point");
    CHECK_STR(perr("1.e5"), "line 1, column 3, at $: expected a digit after the decimal point");
    CHECK_STR(perr("1e"), "line 1, column 3, at $: expected a digit in the exponent");
    CHECK_STR(perr("1e+"), "line 1, column 4, at $: expected a digit in the exponent");
    snprintf(want, sizeof(want), "line 1, column 7, at $.n: %s", value);
    CHECK_STR(perr("{\"n\": +1}"), want);
    CHECK_STR(perr("{\"n\": 0x10}"),
              "line 1, column 8, at $.n: expected ',' or '}' after an object member");
    CHECK_STR(perr("[NaN]"), "line 1, column 2, at $[0]: expected a value (string, number, "
                             "object, array, true, false or null)");
    CHECK_CONTAINS(perr("[Infinity]"), "at $[0]: expected a value");
}

/* JSON (and Go) forbid leading zeros; the error points at the digit after
 * the zero and says why. */
TP_TEST(leading_zeros_rejected_like_go)
{
    CHECK_STR(perr("01"), "line 1, column 2, at $: expected no leading zeros in a number");
    CHECK_STR(perr("-01"), "line 1, column 3, at $: expected no leading zeros in a number");
    CHECK_STR(perr("{\"port\": 0080}"),
              "line 1, column 11, at $.port: expected no leading zeros in a number");
    CHECK_STR(perr("[00]"), "line 1, column 3, at $[0]: expected no leading zeros in a number");
    CHECK_STR(perr("[0, 0.5, -0, 10, 100]"), "(ok)");
}

TP_TEST(literals)
{
    CHECK_CONTAINS(perr("tru"), "line 1, column 1, at $: expected a value");
    CHECK_CONTAINS(perr("{\"a\": True}"), "line 1, column 7, at $.a: expected a value");
    CHECK_CONTAINS(perr("[nul]"), "at $[0]: expected a value");
    CHECK_CONTAINS(perr("[undefined]"), "at $[0]: expected a value");
}

TP_TEST(comments_rejected)
{
    CHECK_STR(perr("// comment\n{}"), "line 1, column 1, at $: expected a value (string, number, "
                                      "object, array, true, false or null)");
    CHECK_STR(perr("{\"a\": 1 /* c */}"),
              "line 1, column 9, at $.a: expected ',' or '}' after an object member");
    CHECK_STR(perr("{\"a\": 1, # c\n\"b\": 2}"),
              "line 1, column 10, at $.a: expected a '\"' starting the next member name (no "
              "trailing commas)");
}

TP_TEST(garbage_after_top_value)
{
    CHECK_STR(perr("{} x"),
              "line 1, column 4, at $: expected the end of the document after the top-level "
              "value");
    CHECK_STR(perr("{}{}"),
              "line 1, column 3, at $: expected the end of the document after the top-level "
              "value");
    CHECK_STR(perr("[1]\n\n ]"),
              "line 3, column 2, at $: expected the end of the document after the top-level "
              "value");
    CHECK_STR(perr("{}\n \t\r\n"), "(ok)");
}

TP_TEST(empty_and_truncated_input)
{
    CHECK_STR(perr(""), "line 1, column 1, at $: expected a value (the document ends too early)");
    CHECK_STR(perr("  \n "),
              "line 2, column 2, at $: expected a value (the document ends too early)");
    CHECK_STR(perr("{\"a\":"),
              "line 1, column 6, at $.a: expected a value (the document ends too early)");
    CHECK_STR(perr("["),
              "line 1, column 2, at $[0]: expected a value (the document ends too early)");
    CHECK_STR(perr("{"), "line 1, column 2, at $: expected a '\"' starting a member name or '}'");
    CHECK_STR(perr("{\"a\": 1"),
              "line 1, column 8, at $.a: expected ',' or '}' after an object member");
}

static char *nested(int depth, int objects)
{
    size_t n = (size_t)depth * 6 + 8, len = 0;
    char *s = malloc(n);
    for (int i = 0; i < depth; i++)
        len += (size_t)snprintf(s + len, n - len, "%s", objects ? "{\"a\":" : "[");
    len += (size_t)snprintf(s + len, n - len, "1");
    for (int i = 0; i < depth; i++)
        s[len++] = objects ? '}' : ']';
    s[len] = '\0';
    return s;
}

TP_TEST(deep_nesting)
{
    char *ok = nested(100, 0), *ok_obj = nested(100, 1);
    char *deep = nested(TP_JSON_MAX_DEPTH + 1, 0), *deep_obj = nested(TP_JSON_MAX_DEPTH + 10, 1);
    char *very_deep = nested(100000, 0);
    char r_ok[64], r_ok_obj[64], r_deep[1024], r_deep_obj[1024], r_very[1024];
    snprintf(r_ok, sizeof(r_ok), "%s", perr(ok));
    snprintf(r_ok_obj, sizeof(r_ok_obj), "%s", perr(ok_obj));
    snprintf(r_deep, sizeof(r_deep), "%s", perr(deep));
    snprintf(r_deep_obj, sizeof(r_deep_obj), "%s", perr(deep_obj));
    snprintf(r_very, sizeof(r_very), "%s", perr(very_deep));
    free(ok);
    free(ok_obj);
    free(deep);
    free(deep_obj);
    free(very_deep);
    CHECK_STR(r_ok, "(ok)");
    CHECK_STR(r_ok_obj, "(ok)");
    CHECK_CONTAINS(r_deep, "line 1, column ");
    CHECK_CONTAINS(r_deep, "expected less deeply nested data");
    CHECK_CONTAINS(r_deep, "at $[0][0][0]");
    CHECK_CONTAINS(r_deep_obj, "expected less deeply nested data");
    CHECK_CONTAINS(r_deep_obj, "at $.a.a.a");
    CHECK_CONTAINS(r_very, "expected less deeply nested data");
}

TP_TEST(error_paths_nested)
{
    CHECK_STR(perr("{\"listen_port\": 8080, \"storage\": {\"host\": \"redis\", \"port\": tru}}"),
              "line 1, column 60, at $.storage.port: expected a value (string, number, object, "
              "array, true, false or null)");
    CHECK_STR(perr("{\"apps\": [{\"name\": \"a\"}, {\"name\": \"b\"}, {\"name\": x}]}"),
              "line 1, column 50, at $.apps[2].name: expected a value (string, number, object, "
              "array, true, false or null)");
    CHECK_CONTAINS(perr("{\"a b\": {\"c.d\": [1, ]}}"),
                   "at $[\"a b\"][\"c.d\"][1]: expected a value");
    CHECK_CONTAINS(perr("{\"\": [[], [0, {\"x-y_z\": -}]]}"), "at $[\"\"][1][1].x-y_z: expected a");
    /* a completed sibling does not leak into the path of a later error */
    CHECK_CONTAINS(perr("{\"a\": {\"b\": [1, 2]}, \"c\": [true, fals]}"), "at $.c[1]: expected");
}

TP_TEST(line_and_column_counting)
{
    CHECK_STR(perr("{\n  \"a\": 1,\n  \"b\" 2\n}"),
              "line 3, column 7, at $.b: expected ':' after the member name");
    CHECK_STR(perr("{\r\n\t\"a\": [\r\n\t\t1,\r\n\t\t2 3]}"),
              "line 4, column 5, at $.a[1]: expected ',' or ']' after an array element");
    CHECK_STR(perr("\n\n\n\n\n\n\n\n\n\n\n{\n    \"storage\": {}\n    \"x\": 1}"),
              "line 14, column 5, at $.storage: expected ',' or '}' after an object member");
}

TP_TEST(parse_file_errors_name_the_file)
{
    char err[1024];
    CHECK(tp_json_parse_file("data/no-such-file.json", err, sizeof(err)) == NULL);
    CHECK_CONTAINS(err, "data/no-such-file.json: cannot open");
    CHECK(tp_json_parse_file("data", err, sizeof(err)) == NULL);
    CHECK_STR(err, "data: not a regular file");
    CHECK(tp_json_parse_file("data/conf-malformed.conf", err, sizeof(err)) == NULL);
    CHECK_STR(err, "data/conf-malformed.conf: line 5, column 5, at $.storage.host: expected ',' "
                   "or '}' after an object member");
    cJSON *root = tp_json_parse_file("data/seed-tyk.conf", err, sizeof(err));
    CHECK(root != NULL);
    int port = cJSON_GetObjectItemCaseSensitive(root, "listen_port")->valueint;
    cJSON_Delete(root);
    CHECK_INT(port, 8080);
}

TP_TEST(error_buffer_is_always_terminated)
{
    char err[16];
    memset(err, 'x', sizeof(err));
    CHECK(tp_json_parse("{\"a\" 1}", 7, err, sizeof(err)) == NULL);
    CHECK_INT(strlen(err), sizeof(err) - 1);
    CHECK_STR(err, "line 1, column ");
}

static const char *push(const char *start, const char *key, int index)
{
    static char path[128];
    snprintf(path, sizeof(path), "%s", start);
    tp_json_path_push(path, sizeof(path), key, index);
    return path;
}

TP_TEST(path_push_formatting)
{
    CHECK_STR(push("$", "storage", 0), "$.storage");
    CHECK_STR(push("$.storage", "port", 0), "$.storage.port");
    CHECK_STR(push("$.apps", NULL, 2), "$.apps[2]");
    CHECK_STR(push("$", NULL, 0), "$[0]");
    CHECK_STR(push("$", "Listen_Port-2", 0), "$.Listen_Port-2");
    CHECK_STR(push("$", "a b", 0), "$[\"a b\"]");
    CHECK_STR(push("$", "a.b", 0), "$[\"a.b\"]");
    CHECK_STR(push("$", "", 0), "$[\"\"]");
    CHECK_STR(push("$", "caf\xc3\xa9", 0), "$[\"caf\xc3\xa9\"]");
    CHECK_STR(push("$.error_overrides", "404", 7), "$.error_overrides.404");

    char small[8] = "$";
    tp_json_path_push(small, sizeof(small), "abcdefghij", 0);
    CHECK_STR(small, "$.abcde");
    tp_json_path_push(small, sizeof(small), NULL, 1);
    CHECK_STR(small, "$.abcde");
}

TP_TEST(type_names)
{
    cJSON *root = cJSON_Parse("[null, true, false, 1.5, \"s\", [], {}]");
    CHECK(root != NULL);
    const char *names[7];
    for (int i = 0; i < 7; i++)
        names[i] = tp_json_type_name(cJSON_GetArrayItem(root, i));
    cJSON_Delete(root);
    CHECK_STR(names[0], "null");
    CHECK_STR(names[1], "bool");
    CHECK_STR(names[2], "bool");
    CHECK_STR(names[3], "number");
    CHECK_STR(names[4], "string");
    CHECK_STR(names[5], "array");
    CHECK_STR(names[6], "object");
    CHECK_STR(tp_json_type_name(NULL), "null");
}

/* Go refuses numbers beyond a float64; underflow is fine (0). */
TP_TEST(number_range_like_go)
{
    CHECK_CONTAINS(perr("{\"big\": 1e999}"), "expected a number within the range of a float64");
    CHECK_CONTAINS(perr("{\"big\": 1e999}"), "$.big");
    CHECK_CONTAINS(perr("[-1e400]"), "float64");
    CHECK_STR(perr("[1e-400, 1.7976931348623157e308]"), "(ok)");
    /* a long literal is read whole */
    char text[300] = "[0.";
    for (int i = 0; i < 250; i++)
        strcat(text, "0");
    strcat(text, "5]");
    char err[256];
    cJSON *root = tp_json_parse(text, strlen(text), err, sizeof(err));
    CHECK(root != NULL);
    double v = cJSON_GetArrayItem(root, 0)->valuedouble;
    cJSON_Delete(root);
    CHECK(v > 0 && v < 1e-249);
}

TP_TEST(set_number_in_place)
{
    char err[256];
    const char *in = "{\"a\":1.5,\"B\":\"x\",\"b\":\"y\",\"c\":true}";
    cJSON *o = tp_json_parse(in, strlen(in), err, sizeof(err));
    CHECK(o != NULL);
    tp_json_set_number(o, "a", 7);     /* a number: replaced where it is */
    tp_json_set_number(o, "b", 8);     /* the member Go reads: the last match */
    tp_json_set_number(o, "quota", 9); /* absent: added */
    char *out = cJSON_PrintUnformatted(o);
    CHECK_STR(out, "{\"a\":7,\"B\":\"x\",\"b\":8,\"c\":true,\"quota\":9}");
    free(out);
    cJSON_Delete(o);
}

void test_json_suite(void)
{
    TP_RUN(parse_valid_documents);
    TP_RUN(parse_top_level_scalars);
    TP_RUN(parse_respects_length);
    TP_RUN(trailing_commas);
    TP_RUN(missing_colon_and_comma);
    TP_RUN(string_errors);
    TP_RUN(lone_surrogate_escape_accepted_like_go);
    TP_RUN(number_errors);
    TP_RUN(leading_zeros_rejected_like_go);
    TP_RUN(literals);
    TP_RUN(comments_rejected);
    TP_RUN(garbage_after_top_value);
    TP_RUN(empty_and_truncated_input);
    TP_RUN(deep_nesting);
    TP_RUN(error_paths_nested);
    TP_RUN(line_and_column_counting);
    TP_RUN(parse_file_errors_name_the_file);
    TP_RUN(error_buffer_is_always_terminated);
    TP_RUN(path_push_formatting);
    TP_RUN(type_names);
    TP_RUN(number_range_like_go);
    TP_RUN(set_number_in_place);
}
