/* test/unit/test_tmpl.c: the text/template engine (tp_tmpl) and the XML reader (tp_xml),
 * against what Go's text/template with Tyk's data prints. */
#include <stdlib.h>

#include "tp_json.h"
#include "tp_tmpl.h"
#include "tp_xml.h"
#include "tp_test.h"

/* Runs <src> over the JSON <data>; returns the output, or "ERR: <why>" for a compile
 * or run-time error. */
static const char *run(const char *src, const char *data)
{
    static char res[4096];
    char why[512];
    cJSON *d = tp_json_parse(data, strlen(data), why, sizeof(why));
    if (d == NULL) {
        snprintf(res, sizeof(res), "BAD DATA: %s", why);
        return res;
    }
    tp_tmpl_t *t = tp_tmpl_compile(src, strlen(src), why, sizeof(why));
    if (t == NULL) {
        cJSON_Delete(d);
        snprintf(res, sizeof(res), "ERR: %s", why);
        return res;
    }
    tp_buf_t out = {0};
    int rc = tp_tmpl_exec(t, d, &out, why, sizeof(why));
    if (rc < 0)
        snprintf(res, sizeof(res), "ERR: %s", why);
    else
        snprintf(res, sizeof(res), "%s", out.len ? tp_buf_cstr(&out) : "");
    tp_buf_free(&out);
    tp_tmpl_free(t);
    cJSON_Delete(d);
    return res;
}

TP_TEST(tmpl_text_and_fields)
{
    CHECK_STR(run("plain text", "{}"), "plain text");
    CHECK_STR(run("{{.a.b.c}}", "{\"a\":{\"b\":{\"c\":\"deep\"}}}"), "deep");
    CHECK_STR(run("{{.missing}}|{{.a.missing}}", "{\"a\":{}}"), "<no value>|<no value>");
    CHECK_STR(run("{{.n}}", "{\"n\":null}"), "<no value>");
    CHECK_STR(run("{{print .n}}", "{\"n\":null}"), "<nil>");
    CHECK_STR(run("{{$.a}} {{$}}", "{\"a\":1}"), "1 map[a:1]");
}

TP_TEST(tmpl_go_number_printing)
{
    CHECK_STR(run("{{.a}} {{.b}} {{.c}} {{.d}} {{.e}}",
                  "{\"a\":1,\"b\":1.5,\"c\":1e21,\"d\":100000000,\"e\":123456}"),
              "1 1.5 1e+21 1e+08 123456");
    CHECK_STR(
        run("{{.a}} {{.b}} {{.c}} {{.d}}", "{\"a\":0.0001,\"b\":0.00001,\"c\":-2.5,\"d\":1234567}"),
        "0.0001 1e-05 -2.5 1.234567e+06");
    CHECK_STR(run("{{1}} {{1.0}} {{1e3}} {{0x1F}} {{'a'}} {{-7}}", "{}"), "1 1 1000 31 97 -7");
}

TP_TEST(tmpl_values_print_as_go)
{
    CHECK_STR(run("{{.}}", "{\"b\":[1,\"x\",null,true],\"a\":{\"z\":1,\"y\":false}}"),
              "map[a:map[y:false z:1] b:[1 x <nil> true]]");
    CHECK_STR(run("{{.array}}", "{\"array\":[]}"), "[]");
    CHECK_STR(run("{{.o}}", "{\"o\":{}}"), "map[]");
}

TP_TEST(tmpl_trimming_and_comments)
{
    CHECK_STR(run("a  {{- .x -}}  \n b", "{\"x\":1}"), "a1b");
    /* "{{-" needs a space to trim: without one Go reads a number */
    CHECK_STR(run("a {{-/* c */-}} b", "{}"), "ERR: line 1: illegal number syntax: \"-\"");
    CHECK_STR(run("a {{- /* c\n more */ -}} b", "{}"), "ab");
    CHECK_STR(run("{{/* nothing */}}x", "{}"), "x");
    CHECK_STR(run("{{-3}}", "{}"), "-3");
    CHECK_STR(run("{{/* open", "{}"), "ERR: line 1: unclosed comment");
}

TP_TEST(tmpl_variables)
{
    CHECK_STR(run("{{$x := .a}}{{$x}}{{$x = 2}}{{$x}}", "{\"a\":1}"), "12");
    CHECK_STR(run("{{with $y := .a}}{{$y}}{{end}}", "{\"a\":\"in\"}"), "in");
    CHECK_STR(run("{{$z}}", "{}"), "ERR: line 1: undefined variable \"$z\"");
    CHECK_STR(run("{{if true}}{{$v := 1}}{{end}}{{$v}}", "{}"),
              "ERR: line 1: undefined variable \"$v\"");
}

TP_TEST(tmpl_if_else_chain)
{
    const char *t = "{{if eq .n 1.0}}one{{else if eq .n 2.0}}two{{else}}many{{end}}";
    CHECK_STR(run(t, "{\"n\":1}"), "one");
    CHECK_STR(run(t, "{\"n\":2}"), "two");
    CHECK_STR(run(t, "{\"n\":5}"), "many");
    /* Go's truth: empty string, 0, false, nil, empty array and map are false */
    CHECK_STR(run("{{if .s}}a{{end}}{{if .z}}b{{end}}{{if .f}}c{{end}}{{if .n}}d{{end}}"
                  "{{if .l}}e{{end}}{{if .m}}f{{end}}{{if .missing}}g{{end}}{{if .t}}T{{end}}",
                  "{\"s\":\"\",\"z\":0,\"f\":false,\"n\":null,\"l\":[],\"m\":{},\"t\":[0]}"),
              "T");
}

TP_TEST(tmpl_range_arrays_and_sorted_maps)
{
    CHECK_STR(run("{{range .array}}[{{.}}]{{end}}", "{\"array\":[1,\"b\",null]}"),
              "[1][b][<no value>]");
    CHECK_STR(run("{{range $k, $v := .}}{{$k}}={{$v}};{{end}}", "{\"b\":2,\"c\":3,\"a\":1}"),
              "a=1;b=2;c=3;");
    CHECK_STR(run("{{range $i, $e := .l}}{{$i}}:{{$e}} {{end}}", "{\"l\":[\"x\",\"y\"]}"),
              "0:x 1:y ");
    CHECK_STR(run("{{range .l}}x{{else}}empty{{end}}", "{\"l\":[]}"), "empty");
    CHECK_STR(run("{{range .missing}}x{{else}}none{{end}}", "{}"), "none");
    CHECK_STR(run("{{range .s}}x{{end}}", "{\"s\":\"abc\"}"),
              "ERR: line 1: range can't iterate over abc");
    CHECK_STR(run("{{range 3}}{{.}}{{end}}", "{}"), "012");
}

TP_TEST(tmpl_break_continue)
{
    CHECK_STR(run("{{range .}}{{if eq . 3.0}}{{break}}{{end}}{{if eq . 1.0}}{{continue}}{{end}}"
                  "{{.}}{{end}}",
                  "{\"a\":1,\"b\":2,\"c\":3,\"d\":4}"),
              "2");
    CHECK_STR(run("{{break}}", "{}"), "ERR: line 1: {{break}} outside {{range}}");
}

TP_TEST(tmpl_with_else)
{
    CHECK_STR(run("{{with .a}}{{.b}}{{else}}no{{end}}", "{\"a\":{\"b\":\"B\"}}"), "B");
    CHECK_STR(run("{{with .a}}{{.b}}{{else}}no{{end}}", "{}"), "no");
    CHECK_STR(run("{{with .x}}x{{else with .y}}{{.}}{{end}}", "{\"y\":\"Y\"}"), "Y");
}

TP_TEST(tmpl_pipelines_and_literals)
{
    CHECK_STR(run("{{.a | printf \"%s!\"}}", "{\"a\":\"hi\"}"), "hi!");
    CHECK_STR(run("{{\"a\\tb\\u00e9\\x41\"}}|{{`raw\\n`}}", "{}"), "a\tb\xc3\xa9"
                                                                   "A|raw\\n");
    CHECK_STR(run("{{true}} {{false}} {{print nil}}", "{}"), "true false <nil>");
    CHECK_STR(run("{{(printf \"%d\" 5) | len}}", "{}"), "1");
    CHECK_STR(run("{{nil}}", "{}"), "ERR: line 1: nil is not a command");
    CHECK_STR(run("{{.a | 3}}", "{}"), "ERR: line 1: non executable command in pipeline stage 2");
}

TP_TEST(tmpl_logic_and_comparison)
{
    CHECK_STR(run("{{and 1 0 2}} {{and 1 2}} {{or 0 \"\" .x}} {{or 0 5}} {{not .a}}", "{\"a\":[]}"),
              "0 2 <no value> 5 true");
    /* and/or stop at the deciding argument: the failing call is never made */
    CHECK_STR(run("{{or 1 (index .l 9)}} {{and 0 (index .l 9)}}", "{\"l\":[]}"), "1 0");
    CHECK_STR(run("{{eq .s \"x\" \"y\"}} {{ne 1 2}} {{lt 1 2}} {{le 2 2}} {{gt \"b\" \"a\"}} "
                  "{{ge 1.5 2.5}}",
                  "{\"s\":\"y\"}"),
              "true true true true true false");
    CHECK_STR(run("{{eq .n 1}}", "{\"n\":1}"),
              "ERR: line 1: error calling eq: incompatible types for comparison: float64 and int");
    CHECK_STR(run("{{eq .missing nil}} {{eq .s nil}}", "{\"s\":\"x\"}"), "true false");
}

TP_TEST(tmpl_len_index)
{
    CHECK_STR(run("{{len .l}} {{len .m}} {{len .s}} {{index .l 1}} {{index .m \"k\"}} "
                  "{{index .m \"none\"}} {{index .s 0}}",
                  "{\"l\":[1,2,3],\"m\":{\"k\":\"v\"},\"s\":\"hé\"}"),
              "3 1 3 2 v <no value> 104");
    CHECK_STR(run("{{index .l 5}}", "{\"l\":[1]}"),
              "ERR: line 1: error calling index: index out of range: 5");
    CHECK_STR(run("{{index .l 1.0}}", "{\"l\":[1]}"),
              "ERR: line 1: error calling index: cannot index slice/array with type float64");
    CHECK_STR(run("line1\n{{len .n}}", "{\"n\":3}"),
              "ERR: line 2: error calling len: len of type float64");
}

TP_TEST(tmpl_printf_verbs)
{
    CHECK_STR(run("{{printf \"%s|%d|%v|%q|%f|%.2f|%5.1f|%-4d|%04d|%x|%t|%%|%e|%g\" .s 42 .f .s "
                  ".f .f .f 7 -7 255 true .f .f}}",
                  "{\"s\":\"a\\\"b\",\"f\":3.14159}"),
              "a\"b|42|3.14159|\"a\\\"b\"|3.141590|3.14|  3.1|7   |-007|ff|true|%|3.141590e+00|"
              "3.14159");
    CHECK_STR(run("{{printf \"%d %s\" .f}}", "{\"f\":1.5}"), "%!d(float64=1.5) %!s(MISSING)");
    CHECK_STR(run("{{printf \"%v\" .l}} {{printf \"x\" 1}}", "{\"l\":[1,\"a\"]}"),
              "[1 a] x%!(EXTRA int=1)");
    CHECK_STR(run("{{printf \"%#v\" .}}", "{}"),
              "ERR: line 1: printf: the # flag is not supported (in \"%#v\")");
}

TP_TEST(tmpl_print_println_escapers)
{
    CHECK_STR(run("{{print 1 2 \"a\" \"b\" 3}}|{{println 1 \"a\"}}", "{}"), "1 2ab3|1 a\n");
    CHECK_STR(run("{{html \"<a href='x'>&\\\"\"}}", "{}"), "&lt;a href=&#39;x&#39;&gt;&amp;&#34;");
    CHECK_STR(run("{{js \"it's <b>\\n\"}}", "{}"), "it\\'s \\u003Cb\\u003E\\u000A");
    CHECK_STR(run("{{urlquery \"a b&c=d/é\"}} {{html .missing}}", "{}"),
              "a+b%26c%3Dd%2F%C3%A9 &lt;no value&gt;");
}

TP_TEST(tmpl_json_marshal)
{
    CHECK_STR(
        run("{{jsonMarshal .}}",
            "{\"z\":[1,2.5,1e21,1e-7,null],\"a\":\"<b>&\\u2028\",\"m\":{\"y\":true,\"x\":{}}}"),
        "{\"a\":\"\\u003cb\\u003e\\u0026\\u2028\",\"m\":{\"x\":{},\"y\":true},\"z\":[1,2.5,"
        "1e+21,1e-7,null]}");
    CHECK_STR(
        run("{{jsonMarshal .missing}} {{jsonMarshal .s}} {{toRawJson .s}}", "{\"s\":\"<\\t>\"}"),
        "null \"\\u003c\\t\\u003e\" \"<\\t>\"");
    CHECK_STR(run("{{toPrettyJson .}}", "{\"b\":[1],\"a\":{}}"),
              "{\n  \"a\": {},\n  \"b\": [\n    1\n  ]\n}");
    CHECK_STR(run("{{jsonMarshal .array}}", "{\"array\":[{\"k\":\"v\"}]}"), "[{\"k\":\"v\"}]");
}

TP_TEST(tmpl_xml_marshal)
{
    /* one key: the root; members in key order, "-" attributes, "#text", lists repeat */
    CHECK_STR(run("{{xmlMarshal .}}", "{\"order\":{\"-id\":7,\"z\":\"<&>\",\"item\":[{\"-n\":\"a\","
                                      "\"#text\":\"x\"},{\"-n\":\"b\"}],\"price\":2.5,\"ok\":true,"
                                      "\"none\":null,\"empty\":{}}}"),
              "<order id=\"7\"><empty/><item n=\"a\">x</item><item n=\"b\"/><none/><ok>true</ok>"
              "<price>2.5</price><z>&lt;&amp;&gt;</z></order>");
    /* several keys, or a list at the top: under <doc> */
    CHECK_STR(run("{{xmlMarshal .}}", "{\"b\":1,\"a\":\"q\\\"'\"}"),
              "<doc><a>q&quot;&apos;</a><b>1</b></doc>");
    CHECK_STR(run("{{xmlMarshal .}}", "{\"r\":[1,2]}"), "<doc><r>1</r><r>2</r></doc>");
    /* what mxj refuses, and what is not a map: "" */
    CHECK_STR(run("{{xmlMarshal .}}", "{\"r\":{\"#text\":\"t\",\"c\":1}}"), "");
    CHECK_STR(run("{{xmlMarshal .r}}", "{\"r\":[1]}"), "");
    CHECK_STR(run("{{xmlMarshal .}}", "{\"r\":{\"-a\":{\"x\":1}}}"), "");
}

TP_TEST(tmpl_sprig_strings)
{
    CHECK_STR(run("{{upper .s}} {{lower .s}} {{trim \"  x \"}} {{.s | trimPrefix \"He\"}} "
                  "{{replace \"l\" \"L\" .s}} {{repeat 2 \"ab\"}} {{trunc 3 .s}} {{substr 1 3 .s}}",
                  "{\"s\":\"Hello\"}"),
              "HELLO hello x llo HeLLo abab Hel el");
    CHECK_STR(run("{{contains \"ell\" .s}} {{hasPrefix \"He\" .s}} {{hasSuffix \"x\" .s}} "
                  "{{quote .s 1}} {{squote .s}} {{cat .s 2 nil}} {{b64enc .s}} {{b64dec "
                  "\"SGVsbG8=\"}} {{b64dec \"SGVsbG8\"}}",
                  "{\"s\":\"Hello\"}"),
              "true true false \"Hello\" \"1\" 'Hello' Hello 2 SGVsbG8= Hello illegal base64 data "
              "at input byte 4");
    CHECK_STR(run("{{upper .n}}", "{\"n\":1}"),
              "ERR: line 1: wrong type for value; expected string; got float64");
    CHECK_STR(run("{{upper .missing}}", "{}"), "ERR: line 1: invalid value; expected string");
}

TP_TEST(tmpl_sprig_lists_defaults_math)
{
    CHECK_STR(run("{{join \",\" .l}} {{splitList \",\" \"a,b\"}} {{(split \",\" \"a,b\")._1}} "
                  "{{index (splitList \"-\" \"x-y\") 1}}",
                  "{\"l\":[\"a\",1,null,true]}"),
              "a,1,true [a b] b y");
    CHECK_STR(run("{{.missing | default \"dflt\"}} {{.s | default \"dflt\"}} {{empty .z}} "
                  "{{coalesce .missing 0 \"c\"}} {{ternary \"y\" \"n\" true}} {{toString 2.5}}",
                  "{\"s\":\"set\",\"z\":0}"),
              "dflt set true c y 2.5");
    CHECK_STR(run("{{add 1 .n \"3\"}} {{sub 10 .n}} {{mul 2 3 4}} {{div 7 2}} {{mod 7 2}} "
                  "{{add1 .n}} {{atoi \"42\"}} {{int \"3.00\"}} {{float64 \"2.5\"}}",
                  "{\"n\":2.9}"),
              "6 8 24 3 1 3 42 3 2.5");
    CHECK_STR(run("{{div 1 0}}", "{}"),
              "ERR: line 1: error calling div: runtime error: integer divide by zero");
}

TP_TEST(tmpl_refused_constructs)
{
    CHECK_STR(run("a\nb\n{{template \"x\"}}", "{}"),
              "ERR: line 3: the \"template\" action is not supported");
    CHECK_STR(run("{{define \"x\"}}{{end}}", "{}"),
              "ERR: line 1: the \"define\" action is not supported");
    CHECK_STR(run("{{block \"x\" .}}{{end}}", "{}"),
              "ERR: line 1: the \"block\" action is not supported");
    CHECK_STR(run("{{.a | sha256sum}}", "{}"),
              "ERR: line 1: the function \"sha256sum\" is not supported");
    CHECK_STR(run("{{call .x}}", "{}"), "ERR: line 1: the function \"call\" is not supported");
    CHECK_STR(run("{{.a.Method 1}}", "{}"),
              "ERR: line 1: method calls are not supported (.Method has arguments)");
    CHECK_STR(run("{{1i}}", "{}"), "ERR: line 1: the number syntax of 1i is not supported");
    CHECK_STR(run("{{if .a}}x", "{}"), "ERR: line 1: unexpected EOF");
    CHECK_STR(run("{{end}}", "{}"), "ERR: line 1: unexpected {{end}}");
    CHECK_STR(run("{{.a", "{}"), "ERR: line 1: unclosed action");
    CHECK_STR(run("{{\"abc}}", "{}"), "ERR: line 1: unterminated quoted string");
}

TP_TEST(tmpl_limits)
{
    /* 3 nested ranges over 200 elements: 8 million iterations, stopped by the step limit */
    char data[2000] = "{\"l\":[";
    for (int i = 0; i < 200; i++)
        strcat(data, i ? ",0" : "0");
    strcat(data, "]}");
    CHECK_CONTAINS(run("{{range .l}}{{range $.l}}{{range $.l}}x{{end}}{{end}}{{end}}", data),
                   "ERR: line 1: the template ran more than");
    /* doubling a string until it hits the memory limit */
    CHECK_CONTAINS(run("{{$x := \"abcdefgh\"}}{{range .l}}{{range $.l}}{{$x = printf \"%s%s\" $x "
                       "$x}}{{end}}{{end}}",
                       data),
                   "bytes of memory");
    char deep[400] = "{{";
    for (int i = 0; i < 120; i++)
        strcat(deep, "(");
    strcat(deep, "1");
    for (int i = 0; i < 120; i++)
        strcat(deep, ")");
    strcat(deep, "}}");
    CHECK_CONTAINS(run(deep, "{}"), "nesting deeper than 100");
}

TP_TEST(tmpl_tyk_array_body)
{
    /* Tyk puts a top-level JSON array under "array" */
    CHECK_STR(
        run("{{range .array}}{{.id}},{{end}}{{len .array}}", "{\"array\":[{\"id\":1},{\"id\":2}]}"),
        "1,2,2");
}

TP_TEST(tmpl_duplicate_keys_last_wins)
{
    CHECK_STR(run("{{.a}} {{len .}} {{.}}", "{\"a\":1,\"b\":2,\"a\":3}"), "3 2 map[a:3 b:2]");
}

TP_TEST(tmpl_field_of_non_map)
{
    CHECK_STR(run("{{.s.x}}", "{\"s\":\"str\"}"),
              "ERR: line 1: can't evaluate field x in type interface {}");
    CHECK_STR(run("{{.n.x}}", "{\"n\":null}"),
              "ERR: line 1: nil pointer evaluating interface {}.x");
}

TP_TEST(tmpl_parenthesized_chain)
{
    CHECK_STR(run("{{(index .l 0).name}}", "{\"l\":[{\"name\":\"n0\"}]}"), "n0");
    CHECK_STR(run("{{len}}", "{}"), "ERR: line 1: wrong number of args for len: want 1 got 0");
}

TP_TEST(tmpl_wrong_literal_types)
{
    CHECK_STR(run("{{repeat \"2\" \"a\"}}", "{}"), "ERR: line 1: expected integer; found \"2\"");
    CHECK_STR(run("{{upper 5}}", "{}"), "ERR: line 1: expected string; found 5");
    CHECK_STR(run("{{repeat 2.5 \"a\"}}", "{}"), "ERR: line 1: expected integer; found 2.5");
}

TP_TEST(tmpl_string_escapes_refused)
{
    CHECK_STR(run("{{\"\\q\"}}", "{}"), "ERR: line 1: invalid syntax in string \"\\q\"");
    CHECK_STR(run("{{`a\r\nb`}}", "{}"), "a\nb");
}

TP_TEST(tmpl_quote_and_printf_q)
{
    CHECK_STR(run("{{printf \"%q\" .s}} {{quote .s}}", "{\"s\":\"a\\n\\u0001\\u00e9\"}"),
              "\"a\\n\\x01\xc3\xa9\" \"a\\n\\x01\xc3\xa9\"");
}

TP_TEST(tmpl_json_numbers)
{
    CHECK_STR(run("{{jsonMarshal .}}", "{\"a\":100000000,\"b\":0.000001,\"c\":-0.0,\"d\":12.5e-9}"),
              "{\"a\":100000000,\"b\":0.000001,\"c\":-0,\"d\":1.25e-8}");
}

TP_TEST(tmpl_output_appends_and_partial)
{
    char why[256];
    tp_tmpl_t *t = tp_tmpl_compile("ok {{index .l 1}}", 17, why, sizeof(why));
    CHECK(t != NULL);
    cJSON *d = cJSON_Parse("{\"l\":[]}");
    tp_buf_t out = {0};
    tp_buf_puts(&out, "pre:");
    int rc = tp_tmpl_exec(t, d, &out, why, sizeof(why));
    char got[64];
    snprintf(got, sizeof(got), "%s", tp_buf_cstr(&out));
    tp_buf_free(&out);
    cJSON_Delete(d);
    tp_tmpl_free(t);
    CHECK_INT(rc, -1);
    /* what ran before the error stays, as with Go's writer */
    CHECK_STR(got, "pre:ok ");
    CHECK_STR(why, "line 1: error calling index: index out of range: 1");
}

TP_TEST(tmpl_output_limit)
{
    CHECK_CONTAINS(run("{{range .l}}{{range $.l}}{{repeat 10000 \"x\"}}{{end}}{{end}}",
                       "{\"l\":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,"
                       "25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,41,42]}"),
                   "ERR: line 1: the output is larger than");
}

/* XML as mxj.NewMapXml gives it, then through a template */
static const char *xrun(const char *src, const char *xml)
{
    static char res[4096];
    char why[512];
    cJSON *d = tp_xml_to_json(xml, strlen(xml), why, sizeof(why));
    if (d == NULL) {
        snprintf(res, sizeof(res), "XML ERR: %s", why);
        return res;
    }
    tp_tmpl_t *t = tp_tmpl_compile(src, strlen(src), why, sizeof(why));
    tp_buf_t out = {0};
    if (t == NULL || tp_tmpl_exec(t, d, &out, why, sizeof(why)) < 0)
        snprintf(res, sizeof(res), "ERR: %s", why);
    else
        snprintf(res, sizeof(res), "%s", out.len ? tp_buf_cstr(&out) : "");
    tp_buf_free(&out);
    tp_tmpl_free(t);
    cJSON_Delete(d);
    return res;
}

TP_TEST(xml_attributes_repeated_text)
{
    const char *x = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!-- c -->"
                    "<soap:order id=\"7\" xmlns:soap=\"urn:x\"><item sku=\"a\">one</item>"
                    "<item>two &amp; &#65;</item><note><![CDATA[<raw>]]></note>"
                    "<empty/><n>5</n></soap:order>";
    CHECK_STR(
        xrun("{{jsonMarshal .}}", x),
        "{\"order\":{\"-id\":\"7\",\"-soap\":\"urn:x\",\"empty\":\"\",\"item\":[{\"#text\":"
        "\"one\",\"-sku\":\"a\"},\"two \\u0026 A\"],\"n\":\"5\",\"note\":\"\\u003craw\\u003e\"}}");
    CHECK_STR(xrun("{{range .order.item}}[{{if .sku}}{{end}}]{{end}}", x),
              "ERR: line 1: can't evaluate field sku in type interface {}");
    CHECK_STR(xrun("{{range .order.item}}{{printf \"%v;\" .}}{{end}}{{.order.n}}", x),
              "map[#text:one -sku:a];two & A;5");
    /* text met before any child or attribute wins, as in mxj: the children are dropped */
    CHECK_STR(xrun("{{jsonMarshal .}}", "<a>hi<b>x</b>tail</a>"), "{\"a\":\"hi\"}");
    CHECK_STR(xrun("{{jsonMarshal .}}", "<a><b>x</b>tail</a>"),
              "{\"a\":{\"#text\":\"tail\",\"b\":\"x\"}}");
    CHECK_STR(xrun("{{jsonMarshal .}}", "<_/>"), "{\"_\":\"\"}");
}

TP_TEST(xml_template_over_soap)
{
    const char *x =
        "<Envelope><Body><GetUser id=\"42\"><Name>Ann</Name></GetUser></Body></Envelope>";
    /* "-id" is no Go field name: templates reach attributes with index */
    CHECK_STR(xrun("{\"id\": {{index .Envelope.Body.GetUser \"-id\"}}, \"name\": "
                   "{{.Envelope.Body.GetUser.Name | quote}}}",
                   x),
              "{\"id\": 42, \"name\": \"Ann\"}");
}

TP_TEST(xml_refusals_and_errors)
{
    char why[256];
    CHECK(tp_xml_to_json("<!DOCTYPE a [<!ENTITY x \"y\">]><a>&x;</a>", 40, why, sizeof(why)) ==
          NULL);
    CHECK_CONTAINS(why, "DTDs");
    const char *s = "<a>&foo;</a>";
    CHECK(tp_xml_to_json(s, strlen(s), why, sizeof(why)) == NULL);
    CHECK_CONTAINS(why, "invalid character entity &foo;");
    s = "<a><b></a>";
    CHECK(tp_xml_to_json(s, strlen(s), why, sizeof(why)) == NULL);
    CHECK_CONTAINS(why, "element <b> closed by </a>");
    s = "<a>";
    CHECK(tp_xml_to_json(s, strlen(s), why, sizeof(why)) == NULL);
    CHECK_CONTAINS(why, "unexpected EOF");
    s = "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><a/>";
    CHECK(tp_xml_to_json(s, strlen(s), why, sizeof(why)) == NULL);
    CHECK_CONTAINS(why, "ISO-8859-1");
    char deep[3000] = "";
    for (int i = 0; i < 300; i++)
        strcat(deep, "<a>");
    CHECK(tp_xml_to_json(deep, strlen(deep), why, sizeof(why)) == NULL);
    CHECK_CONTAINS(why, "nested deeper");
}

void test_tmpl_suite(void)
{
    TP_RUN(tmpl_text_and_fields);
    TP_RUN(tmpl_go_number_printing);
    TP_RUN(tmpl_values_print_as_go);
    TP_RUN(tmpl_trimming_and_comments);
    TP_RUN(tmpl_variables);
    TP_RUN(tmpl_if_else_chain);
    TP_RUN(tmpl_range_arrays_and_sorted_maps);
    TP_RUN(tmpl_break_continue);
    TP_RUN(tmpl_with_else);
    TP_RUN(tmpl_pipelines_and_literals);
    TP_RUN(tmpl_logic_and_comparison);
    TP_RUN(tmpl_len_index);
    TP_RUN(tmpl_printf_verbs);
    TP_RUN(tmpl_print_println_escapers);
    TP_RUN(tmpl_json_marshal);
    TP_RUN(tmpl_xml_marshal);
    TP_RUN(tmpl_sprig_strings);
    TP_RUN(tmpl_sprig_lists_defaults_math);
    TP_RUN(tmpl_refused_constructs);
    TP_RUN(tmpl_limits);
    TP_RUN(tmpl_tyk_array_body);
    TP_RUN(tmpl_duplicate_keys_last_wins);
    TP_RUN(tmpl_field_of_non_map);
    TP_RUN(tmpl_parenthesized_chain);
    TP_RUN(tmpl_wrong_literal_types);
    TP_RUN(tmpl_string_escapes_refused);
    TP_RUN(tmpl_quote_and_printf_q);
    TP_RUN(tmpl_json_numbers);
    TP_RUN(tmpl_output_appends_and_partial);
    TP_RUN(tmpl_output_limit);
    TP_RUN(xml_attributes_repeated_text);
    TP_RUN(xml_template_over_soap);
    TP_RUN(xml_refusals_and_errors);
}
