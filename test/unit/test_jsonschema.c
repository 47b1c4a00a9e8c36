/* test/unit/test_jsonschema.c: JSON Schema validation and gojsonschema's error texts. */
#include <stdlib.h>

#include "tp_jsonschema.h"
#include "tp_json.h"
#include "tp_test.h"

static char result[8192];
static int nerrors;

/* Compiles <schema> and validates <doc> (both JSON text). Returns "(valid)",
 * the joined errors, or "compile: <why>"; the error count is in nerrors. */
static const char *run(const char *schema, const char *doc)
{
    char err[512];
    nerrors = -1;
    cJSON *js = tp_json_parse(schema, strlen(schema), err, sizeof(err));
    if (js == NULL) {
        snprintf(result, sizeof(result), "bad test schema: %s", err);
        return result;
    }
    tp_jschema_t *s = tp_jschema_compile(js, err, sizeof(err));
    cJSON_Delete(js);
    if (s == NULL) {
        snprintf(result, sizeof(result), "compile: %s", err);
        return result;
    }
    cJSON *jd = tp_json_parse(doc, strlen(doc), err, sizeof(err));
    if (jd == NULL) {
        tp_jschema_free(s);
        snprintf(result, sizeof(result), "bad test doc: %s", err);
        return result;
    }
    tp_buf_t out = {0};
    nerrors = tp_jschema_validate(s, jd, &out);
    snprintf(result, sizeof(result), "%s", nerrors ? tp_buf_cstr(&out) : "(valid)");
    tp_buf_free(&out);
    cJSON_Delete(jd);
    tp_jschema_free(s);
    return result;
}

TP_TEST(type_single_and_list)
{
    CHECK_STR(run("{\"type\":\"object\"}", "[]"),
              "(root): Invalid type. Expected: object, given: array");
    CHECK_INT(nerrors, 1);
    CHECK_STR(run("{\"type\":[\"string\",\"null\"]}", "5"),
              "(root): Invalid type. Expected: [string,null], given: integer");
    CHECK_STR(run("{\"type\":[\"string\",\"null\"]}", "null"), "(valid)");
    CHECK_STR(run("{\"type\":\"string\"}", "null"),
              "(root): Invalid type. Expected: string, given: null");
    CHECK_STR(run("{\"type\":\"boolean\"}", "{}"),
              "(root): Invalid type. Expected: boolean, given: object");
}

/* "integer" is a number without a fraction, however it is written. */
TP_TEST(type_integer)
{
    CHECK_STR(run("{\"type\":\"integer\"}", "1.0"), "(valid)");
    CHECK_STR(run("{\"type\":\"integer\"}", "1e3"), "(valid)");
    CHECK_STR(run("{\"type\":\"integer\"}", "1.5"),
              "(root): Invalid type. Expected: integer, given: number");
    CHECK_STR(run("{\"type\":\"number\"}", "7"), "(valid)");
}

TP_TEST(required_in_schema_order)
{
    CHECK_STR(run("{\"type\":\"object\",\"required\":[\"name\",\"age\",\"id\"]}", "{\"age\":1}"),
              "(root): name is required; (root): id is required");
    CHECK_INT(nerrors, 2);
    CHECK_STR(run("{\"required\":[\"a\"]}", "[1]"), "(valid)");
}

TP_TEST(minimum_maximum)
{
    const char *s = "{\"properties\":{\"age\":{\"type\":\"integer\",\"minimum\":18,"
                    "\"maximum\":130}}}";
    CHECK_STR(run(s, "{\"age\":17}"), "age: Must be greater than or equal to 18");
    CHECK_STR(run(s, "{\"age\":131}"), "age: Must be less than or equal to 130");
    CHECK_STR(run(s, "{\"age\":18}"), "(valid)");
    CHECK_STR(run(s, "{\"age\":130}"), "(valid)");
}

/* Draft 4's boolean modifier and draft 6's numeric bound both work (hybrid). */
TP_TEST(exclusive_bounds)
{
    CHECK_STR(run("{\"minimum\":5,\"exclusiveMinimum\":true}", "5"),
              "(root): Must be greater than 5");
    CHECK_STR(run("{\"maximum\":5,\"exclusiveMaximum\":true}", "5"), "(root): Must be less than 5");
    CHECK_STR(run("{\"maximum\":5,\"exclusiveMaximum\":false}", "5"), "(valid)");
    CHECK_STR(run("{\"exclusiveMaximum\":10}", "10"), "(root): Must be less than 10");
    CHECK_STR(run("{\"exclusiveMinimum\":1.5}", "1.5"), "(root): Must be greater than 1.5");
    CHECK_STR(run("{\"exclusiveMinimum\":true}", "1"),
              "compile: exclusiveMinimum: cannot be used without minimum");
    CHECK_STR(run("{\"$schema\":\"http://json-schema.org/draft-04/schema#\","
                  "\"exclusiveMaximum\":3}",
                  "1"),
              "compile: exclusiveMaximum: expected a boolean");
}

/* Bounds print as fmt's %v of a big.Float: shortest digits, %e outside [1e-4, 1e6). */
TP_TEST(number_text)
{
    CHECK_STR(run("{\"minimum\":1000000}", "1"), "(root): Must be greater than or equal to 1e+06");
    CHECK_STR(run("{\"minimum\":123456}", "1"), "(root): Must be greater than or equal to 123456");
    CHECK_STR(run("{\"minimum\":1500000}", "1"),
              "(root): Must be greater than or equal to 1.5e+06");
    CHECK_STR(run("{\"maximum\":0.0001}", "1"), "(root): Must be less than or equal to 0.0001");
    CHECK_STR(run("{\"maximum\":0.00001}", "1"), "(root): Must be less than or equal to 1e-05");
    CHECK_STR(run("{\"maximum\":-2.5}", "1"), "(root): Must be less than or equal to -2.5");
    CHECK_STR(run("{\"maximum\":0}", "1"), "(root): Must be less than or equal to 0");
}

TP_TEST(multiple_of_decimals)
{
    CHECK_STR(run("{\"multipleOf\":0.1}", "0.3"), "(valid)");
    CHECK_STR(run("{\"multipleOf\":0.01}", "19.99"), "(valid)");
    CHECK_STR(run("{\"multipleOf\":0.01}", "1e10"), "(valid)");
    CHECK_STR(run("{\"multipleOf\":0.1}", "0.35"), "(root): Must be a multiple of 0.1");
    CHECK_STR(run("{\"multipleOf\":3}", "10"), "(root): Must be a multiple of 3");
    CHECK_STR(run("{\"multipleOf\":3}", "0"), "(valid)");
    CHECK_STR(run("{\"multipleOf\":1e-30}", "1e-31"), "(root): Must be a multiple of 1e-30");
    CHECK_STR(run("{\"multipleOf\":0}", "1"),
              "compile: multipleOf: must be strictly greater than 0");
}

/* enum and const print Go's json.Marshal of the values, with the field again. */
TP_TEST(enum_and_const)
{
    CHECK_STR(run("{\"enum\":[\"red\",\"green\",1.0,null]}", "\"blue\""),
              "(root): (root) must be one of the following: \"red\", \"green\", 1, null");
    CHECK_STR(run("{\"enum\":[\"red\",\"green\",1.0,null]}", "1"), "(valid)");
    CHECK_STR(run("{\"properties\":{\"color\":{\"enum\":[\"<b>\",{\"z\":1,\"a\":[]}]}}}",
                  "{\"color\":\"blue\"}"),
              "color: color must be one of the following: \"\\u003cb\\u003e\", "
              "{\"a\":[],\"z\":1}");
    CHECK_STR(run("{\"enum\":[{\"a\":1,\"b\":2}]}", "{\"b\":2,\"a\":1}"), "(valid)");
    CHECK_STR(run("{\"const\":{\"b\":1,\"a\":[true]}}", "{\"a\":[false]}"),
              "(root): (root) does not match: {\"a\":[true],\"b\":1}");
    CHECK_STR(run("{\"const\":2}", "2.0"), "(valid)");
    /* encoding/json's float64: %e outside [1e-6, 1e21), e-07 written e-7 */
    CHECK_STR(run("{\"enum\":[1e-7,1e21,100,0.5]}", "2"),
              "(root): (root) must be one of the following: 1e-7, 1e+21, 100, 0.5");
    CHECK_STR(run("{\"enum\":[1,1.0]}", "1"), "compile: enum: enum items must be unique");
}

/* Lengths count code points, as utf8.RuneCount does. */
TP_TEST(string_length_unicode)
{
    CHECK_STR(run("{\"minLength\":3}", "\"\xe6\x97\xa5\xe6\x9c\xac\""),
              "(root): String length must be greater than or equal to 3");
    CHECK_STR(run("{\"minLength\":3}", "\"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\""), "(valid)");
    CHECK_STR(run("{\"maxLength\":2}", "\"h\xc3\xa9\xc3\xa9\""),
              "(root): String length must be less than or equal to 2");
    CHECK_STR(run("{\"maxLength\":2}", "\"\xc3\xa9\xc3\xa9\""), "(valid)");
    CHECK_STR(run("{\"minLength\":2}", "12"), "(valid)");
    CHECK_STR(run("{\"minLength\":2.5}", "1"), "compile: minLength: expected an integer");
    /* Tyk's schema went through float64: 2.0 is the integer 2 */
    CHECK_STR(run("{\"minLength\":2.0}", "\"a\""),
              "(root): String length must be greater than or equal to 2");
    CHECK_STR(run("{\"minLength\":3,\"maxLength\":2}", "1"),
              "compile: minLength: cannot be greater than maxLength");
}

TP_TEST(pattern_basic)
{
    const char *s = "{\"pattern\":\"^\\\\d{3}-\\\\w+$\"}";
    CHECK_STR(run(s, "\"123-ab_c\""), "(valid)");
    CHECK_STR(run(s, "\"12-ab\""), "(root): Does not match pattern '^\\d{3}-\\w+$'");
    CHECK_STR(run(s, "\"123-ab c\""), "(root): Does not match pattern '^\\d{3}-\\w+$'");
    /* unanchored, as regexp.MatchString */
    CHECK_STR(run("{\"pattern\":\"b+\"}", "\"abbc\""), "(valid)");
    CHECK_STR(run("{\"pattern\":\"b+\"}", "5"), "(valid)");
}

/* RE2 meanings that POSIX spells differently. */
TP_TEST(pattern_translation)
{
    CHECK_STR(run("{\"pattern\":\"^.$\"}", "\"\xc3\xa9\""), "(valid)");
    CHECK_STR(run("{\"pattern\":\"^.$\"}", "\"\\n\""), "(root): Does not match pattern '^.$'");
    CHECK_STR(run("{\"pattern\":\"^[^a]$\"}", "\"\xc3\xa9\""), "(valid)");
    CHECK_STR(run("{\"pattern\":\"^\\\\D$\"}", "\"\xc3\xa9\""), "(valid)");
    CHECK_STR(run("{\"pattern\":\"^[\\\\].-]+$\"}", "\"].-\""), "(valid)");
    CHECK_STR(run("{\"pattern\":\"^[\\\\].-]+$\"}", "\"\\\\\""),
              "(root): Does not match pattern '^[\\].-]+$'");
    CHECK_STR(run("{\"pattern\":\"^\xc3\xa9+$\"}", "\"\xc3\xa9\xc3\xa9\""), "(valid)");
    CHECK_STR(run("{\"pattern\":\"^[a\xc3\xa9]+$\"}", "\"a\xc3\xa9\x61\""), "(valid)");
    CHECK_STR(run("{\"pattern\":\"(?i)^abc$\"}", "\"ABC\""), "(valid)");
    CHECK_STR(run("{\"pattern\":\"^a+?b(?:c|d)\\\\.$\"}", "\"aabd.\""), "(valid)");
    CHECK_STR(run("{\"pattern\":\"^[[:alpha:]]{2}\\\\s\\\\x41$\"}", "\"ab A\""), "(valid)");
    CHECK_STR(run("{\"pattern\":\"^{a}x{,2}$\"}", "\"{a}x{,2}\""), "(valid)");
    CHECK_STR(run("{\"pattern\":\"^a{2,3}$\"}", "\"aaaa\""),
              "(root): Does not match pattern '^a{2,3}$'");
}

/* What cannot be translated exactly is refused, with the keyword's path. */
TP_TEST(pattern_refused)
{
    CHECK_CONTAINS(run("{\"properties\":{\"n\":{\"pattern\":\"\\\\p{L}\"}}}", "1"),
                   "compile: properties.n.pattern: invalid or unsupported regex");
    CHECK_CONTAINS(run("{\"pattern\":\"(a)\\\\1\"}", "1"), "compile: pattern: invalid or");
    CHECK_CONTAINS(run("{\"pattern\":\"*a\"}", "1"), "missing argument to repetition operator");
    CHECK_CONTAINS(run("{\"pattern\":\"(?s).\"}", "1"), "compile: pattern:");
    CHECK_CONTAINS(run("{\"pattern\":\"(ab\"}", "1"), "missing closing )");
    CHECK_CONTAINS(run("{\"patternProperties\":{\"[z-a]\":{}}}", "1"),
                   "compile: patternProperties.[z-a]: invalid or unsupported regex");
}

TP_TEST(items_tuple_and_additional)
{
    const char *s = "{\"items\":[{\"type\":\"string\"},{\"type\":\"integer\"}],"
                    "\"additionalItems\":false}";
    CHECK_STR(run(s, "[\"a\",\"b\",3]"), "1: Invalid type. Expected: integer, given: string; "
                                         "(root): No additional items allowed on array");
    CHECK_INT(nerrors, 2);
    CHECK_STR(run(s, "[\"a\"]"), "(valid)");
    CHECK_STR(run("{\"items\":[{}],\"additionalItems\":{\"type\":\"string\"}}", "[1,2,\"x\",4]"),
              "1: Invalid type. Expected: string, given: integer; "
              "3: Invalid type. Expected: string, given: integer");
}

TP_TEST(items_schema_field_names)
{
    CHECK_STR(run("{\"properties\":{\"items\":{\"type\":\"array\",\"items\":"
                  "{\"properties\":{\"id\":{\"type\":\"integer\"}}}}}}",
                  "{\"items\":[{\"id\":1},{\"id\":\"x\"}]}"),
              "items.1.id: Invalid type. Expected: integer, given: string");
}

TP_TEST(array_sizes_and_unique)
{
    CHECK_STR(run("{\"minItems\":2}", "[1]"), "(root): Array must have at least 2 items");
    CHECK_STR(run("{\"maxItems\":1}", "[1,2]"), "(root): Array must have at most 1 items");
    CHECK_STR(run("{\"uniqueItems\":true}", "[1,2,1.0,1]"),
              "(root): array items[0,2] must be unique; (root): array items[2,3] must be unique");
    CHECK_STR(run("{\"uniqueItems\":true}", "[{\"a\":1,\"b\":2},{\"b\":2,\"a\":1}]"),
              "(root): array items[0,1] must be unique");
    CHECK_STR(run("{\"uniqueItems\":true}", "[1,\"1\",[1],{\"1\":1}]"), "(valid)");
}

TP_TEST(object_sizes)
{
    CHECK_STR(run("{\"minProperties\":2}", "{\"a\":1}"), "(root): Must have at least 2 properties");
    CHECK_STR(run("{\"maxProperties\":1}", "{\"a\":1,\"b\":2}"),
              "(root): Must have at most 1 properties");
    /* a duplicate member counts once, as in the Go map */
    CHECK_STR(run("{\"maxProperties\":1}", "{\"a\":1,\"a\":2}"), "(valid)");
}

TP_TEST(additional_properties)
{
    CHECK_STR(run("{\"properties\":{\"a\":{}},\"additionalProperties\":false}",
                  "{\"a\":1,\"b\":2,\"c\":3}"),
              "(root): Additional property b is not allowed; "
              "(root): Additional property c is not allowed");
    CHECK_STR(run("{\"additionalProperties\":{\"type\":\"string\"}}", "{\"x\":1,\"y\":\"s\"}"),
              "x: Invalid type. Expected: string, given: integer");
}

TP_TEST(pattern_properties)
{
    CHECK_STR(run("{\"patternProperties\":{\"^x-\":{\"type\":\"string\"}},"
                  "\"additionalProperties\":false}",
                  "{\"x-a\":1,\"y\":\"s\",\"x-b\":\"ok\"}"),
              "x-a: Invalid type. Expected: string, given: integer; "
              "(root): Additional property y is not allowed");
}

TP_TEST(dependencies_both_forms)
{
    const char *s = "{\"dependencies\":{\"card\":[\"billing\",\"zip\"],"
                    "\"x\":{\"required\":[\"y\"]}}}";
    CHECK_STR(run(s, "{\"card\":1,\"zip\":2,\"x\":1}"),
              "(root): Has a dependency on billing; (root): y is required");
    CHECK_STR(run(s, "{\"zip\":2}"), "(valid)");
}

/* Combinators' own errors come after the errors of their branches. */
TP_TEST(all_of)
{
    CHECK_STR(run("{\"allOf\":[{\"type\":\"string\"},{\"maxLength\":2}]}", "\"abc\""),
              "(root): String length must be less than or equal to 2; "
              "(root): Must validate all the schemas (allOf)");
    CHECK_STR(run("{\"allOf\":[{\"type\":\"string\"},{\"maxLength\":2}]}", "\"ab\""), "(valid)");
}

/* anyOf reports the best scoring branch: the one that got furthest. */
TP_TEST(any_of_best_branch)
{
    const char *s =
        "{\"anyOf\":[{\"type\":\"string\"},{\"type\":\"object\",\"required\":[\"a\"]}]}";
    CHECK_STR(run(s, "{}"),
              "(root): Must validate at least one schema (anyOf); (root): a is required");
    CHECK_STR(run(s, "\"x\""), "(valid)");
    CHECK_STR(run(s, "1"), "(root): Must validate at least one schema (anyOf); "
                           "(root): Invalid type. Expected: string, given: integer");
}

TP_TEST(one_of_and_not)
{
    const char *s = "{\"oneOf\":[{\"type\":\"integer\"},{\"minimum\":0}]}";
    CHECK_STR(run(s, "5"), "(root): Must validate one and only one schema (oneOf)");
    CHECK_STR(run(s, "-5"), "(valid)");
    /* the minimum branch scores better than the wrong type */
    CHECK_STR(run(s, "-0.5"), "(root): Must validate one and only one schema (oneOf); "
                              "(root): Must be greater than or equal to 0");
    CHECK_STR(run("{\"not\":{\"type\":\"string\"}}", "\"x\""),
              "(root): Must not validate the schema (not)");
    CHECK_STR(run("{\"not\":{\"type\":\"string\"}}", "1"), "(valid)");
}

/* The object's own checks, then "properties" in schema order. */
TP_TEST(error_order_and_count)
{
    const char *s = "{\"type\":\"object\",\"required\":[\"a\"],\"properties\":"
                    "{\"c\":{\"type\":\"string\"},\"b\":{\"minimum\":3}}}";
    CHECK_STR(run(s, "{\"b\":1,\"c\":2}"),
              "(root): a is required; c: Invalid type. Expected: string, given: integer; "
              "b: Must be greater than or equal to 3");
    CHECK_INT(nerrors, 3);
    /* the last of duplicate members is the one validated */
    CHECK_STR(run("{\"properties\":{\"a\":{\"type\":\"string\"}}}", "{\"a\":1,\"a\":\"x\"}"),
              "(valid)");
}

TP_TEST(ref_definitions_and_escapes)
{
    CHECK_STR(run("{\"definitions\":{\"pos\":{\"type\":\"integer\",\"minimum\":0}},"
                  "\"properties\":{\"n\":{\"$ref\":\"#/definitions/pos\"}}}",
                  "{\"n\":-1}"),
              "n: Must be greater than or equal to 0");
    const char *s = "{\"definitions\":{\"a/b\":{\"type\":\"string\"},\"t~n\":{\"type\":"
                    "\"integer\"}},\"properties\":{\"x\":{\"$ref\":\"#/definitions/a~1b\"},"
                    "\"y\":{\"$ref\":\"#/definitions/t~0n\"}}}";
    CHECK_STR(run(s, "{\"x\":1,\"y\":\"s\"}"), "x: Invalid type. Expected: string, given: integer; "
                                               "y: Invalid type. Expected: integer, given: string");
    /* a "$ref" hides its siblings, as in gojsonschema */
    CHECK_STR(run("{\"definitions\":{\"s\":{\"type\":\"string\"}},"
                  "\"properties\":{\"x\":{\"$ref\":\"#/definitions/s\",\"maxLength\":1}}}",
                  "{\"x\":\"abc\"}"),
              "(valid)");
}

TP_TEST(ref_recursive_root)
{
    const char *s = "{\"type\":\"object\",\"properties\":{\"child\":{\"$ref\":\"#\"},"
                    "\"v\":{\"type\":\"integer\"}}}";
    CHECK_STR(run(s, "{\"child\":{\"child\":{\"v\":\"x\"}}}"),
              "child.child.v: Invalid type. Expected: integer, given: string");
    CHECK_STR(run(s, "{\"child\":{\"child\":[]}}"),
              "child.child: Invalid type. Expected: object, given: array");
}

TP_TEST(ref_refused)
{
    CHECK_STR(run("{\"properties\":{\"a\":{\"$ref\":\"http://example.com/s.json#/x\"}}}", "1"),
              "compile: properties.a.$ref: \"http://example.com/s.json#/x\": only local "
              "references (\"#\" or \"#/json/pointer\") are supported, not remote or relative "
              "ones");
    CHECK_CONTAINS(run("{\"$ref\":\"other.json\"}", "1"), "compile: $ref: \"other.json\": only");
    CHECK_STR(run("{\"$ref\":\"#/definitions/nope\"}", "1"),
              "compile: $ref: \"#/definitions/nope\" does not resolve inside this schema");
    CHECK_STR(run("{\"$ref\":5}", "1"), "compile: $ref: expected a string");
}

TP_TEST(bad_schema_paths)
{
    CHECK_STR(run("{\"properties\":{\"age\":{\"minimum\":\"x\"}}}", "1"),
              "compile: properties.age.minimum: expected a number");
    CHECK_STR(run("{\"items\":[{},{\"type\":\"strin\"}]}", "1"),
              "compile: items.1.type: unknown type \"strin\"");
    CHECK_STR(run("{\"type\":[\"string\",\"string\"]}", "1"),
              "compile: type: string type is duplicated");
    CHECK_STR(run("{\"anyOf\":{}}", "1"), "compile: anyOf: expected an array of schemas");
    CHECK_STR(run("{\"properties\":{\"a\":5}}", "1"),
              "compile: properties.a: expected a schema (an object, true or false)");
    CHECK_STR(run("{\"required\":[\"a\",\"a\"]}", "1"),
              "compile: required: required items must be unique");
    CHECK_STR(run("[]", "1"), "compile: (root): expected a schema (an object, true or false)");
    CHECK_STR(run("{\"dependencies\":{\"a\":[1]}}", "1"),
              "compile: dependencies.a: expected a schema or an array of strings");
}

/* A loop that never steps into the document would recurse forever. */
TP_TEST(ref_cycles_refused)
{
    CHECK_CONTAINS(run("{\"definitions\":{\"a\":{\"$ref\":\"#/definitions/b\"},"
                       "\"b\":{\"$ref\":\"#/definitions/a\"}}}",
                       "1"),
                   "a $ref cycle");
    CHECK_CONTAINS(run("{\"allOf\":[{\"$ref\":\"#\"}]}", "1"), "compile: allOf.0: a $ref cycle");
    CHECK_CONTAINS(run("{\"anyOf\":[{\"type\":\"string\"},{\"not\":{\"$ref\":\"#\"}}]}", "1"),
                   "a $ref cycle");
    CHECK_STR(run("{\"$ref\":\"#\"}", "1"), "compile: (root): a $ref cycle (through $ref, "
                                            "allOf, anyOf, oneOf, not, dependencies or "
                                            "if/then/else) that never descends into the "
                                            "document");
    CHECK_STR(run("{\"items\":{\"$ref\":\"#\"}}", "[[[]]]"), "(valid)");
}

/* A document deeper than the limit fails with one error instead of
 * exhausting the stack. */
TP_TEST(depth_limit)
{
    char err[256];
    cJSON *js = tp_json_parse("{\"items\":{\"$ref\":\"#\"}}", 22, err, sizeof(err));
    CHECK(js != NULL);
    tp_jschema_t *s = tp_jschema_compile(js, err, sizeof(err));
    cJSON_Delete(js);
    CHECK(s != NULL);
    cJSON *doc = cJSON_CreateArray(), *at = doc;
    for (int i = 0; i < 2000; i++) {
        cJSON *a = cJSON_CreateArray();
        cJSON_AddItemToArray(at, a);
        at = a;
    }
    tp_buf_t out = {0};
    int n = tp_jschema_validate(s, doc, &out);
    const char *text = tp_buf_cstr(&out);
    int deep = strstr(text, "Internal Error document or $ref nesting too deep") != NULL;
    int prefixed = strncmp(text, "0.0.0.", 6) == 0;
    tp_buf_free(&out);
    cJSON_Delete(doc);
    tp_jschema_free(s);
    CHECK_INT(n, 1);
    CHECK(deep);
    CHECK(prefixed);
}

TP_TEST(boolean_schemas)
{
    CHECK_STR(run("{\"properties\":{\"a\":false,\"b\":true}}", "{\"a\":1,\"b\":2}"),
              "a: False always fails validation");
    CHECK_STR(run("true", "{}"), "(valid)");
    CHECK_STR(run("{\"$schema\":\"http://json-schema.org/draft-04/schema#\","
                  "\"properties\":{\"a\":false}}",
                  "1"),
              "compile: properties.a: expected a schema (an object)");
    /* const is draft 6: a draft-04 schema ignores it, as gojsonschema does */
    CHECK_STR(run("{\"$schema\":\"http://json-schema.org/draft-04/schema#\",\"const\":1}", "2"),
              "(valid)");
}

TP_TEST(draft6_and_7_keywords)
{
    CHECK_STR(run("{\"propertyNames\":{\"maxLength\":3}}", "{\"abcd\":1,\"ab\":2}"),
              "(root): Property name of \"abcd\" does not match; "
              "(root): String length must be less than or equal to 3");
    CHECK_STR(run("{\"contains\":{\"type\":\"string\"}}", "[1,2]"),
              "(root): At least one of the items must match; "
              "0: Invalid type. Expected: string, given: integer");
    CHECK_STR(run("{\"contains\":{\"type\":\"string\"}}", "[1,\"a\"]"), "(valid)");
    const char *s = "{\"if\":{\"minimum\":10},\"then\":{\"multipleOf\":10},"
                    "\"else\":{\"maximum\":5}}";
    CHECK_STR(run(s, "15"), "(root): Must validate \"then\" as \"if\" was valid; "
                            "(root): Must be a multiple of 10");
    CHECK_STR(run(s, "7"), "(root): Must validate \"else\" as \"if\" was not valid; "
                           "(root): Must be less than or equal to 5");
    CHECK_STR(run(s, "20"), "(valid)");
}

/* Errors are appended to what <out> already holds. */
TP_TEST(validate_appends)
{
    char err[256];
    cJSON *js = tp_json_parse("{\"type\":\"string\"}", 17, err, sizeof(err));
    CHECK(js != NULL);
    tp_jschema_t *s = tp_jschema_compile(js, err, sizeof(err));
    cJSON_Delete(js);
    CHECK(s != NULL);
    cJSON *doc = cJSON_CreateNumber(3);
    tp_buf_t out = {0};
    tp_buf_puts(&out, "body: ");
    int n = tp_jschema_validate(s, doc, &out);
    char text[128];
    snprintf(text, sizeof(text), "%s", tp_buf_cstr(&out));
    tp_buf_free(&out);
    cJSON_Delete(doc);
    tp_jschema_free(s);
    CHECK_INT(n, 1);
    CHECK_STR(text, "body: (root): Invalid type. Expected: string, given: integer");
}

void test_jsonschema_suite(void)
{
    TP_RUN(type_single_and_list);
    TP_RUN(type_integer);
    TP_RUN(required_in_schema_order);
    TP_RUN(minimum_maximum);
    TP_RUN(exclusive_bounds);
    TP_RUN(number_text);
    TP_RUN(multiple_of_decimals);
    TP_RUN(enum_and_const);
    TP_RUN(string_length_unicode);
    TP_RUN(pattern_basic);
    TP_RUN(pattern_translation);
    TP_RUN(pattern_refused);
    TP_RUN(items_tuple_and_additional);
    TP_RUN(items_schema_field_names);
    TP_RUN(array_sizes_and_unique);
    TP_RUN(object_sizes);
    TP_RUN(additional_properties);
    TP_RUN(pattern_properties);
    TP_RUN(dependencies_both_forms);
    TP_RUN(all_of);
    TP_RUN(any_of_best_branch);
    TP_RUN(one_of_and_not);
    TP_RUN(error_order_and_count);
    TP_RUN(ref_definitions_and_escapes);
    TP_RUN(ref_recursive_root);
    TP_RUN(ref_refused);
    TP_RUN(bad_schema_paths);
    TP_RUN(ref_cycles_refused);
    TP_RUN(depth_limit);
    TP_RUN(boolean_schemas);
    TP_RUN(draft6_and_7_keywords);
    TP_RUN(validate_appends);
}
