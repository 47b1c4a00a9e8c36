/*
 * common/tp_xml.h: XML bodies as Tyk's XML body transforms see them: the map
 * that mxj.NewMapXml (clbanning/mxj v1, no casting) builds from Go's
 * encoding/xml tokens, as a cJSON object for tp_tmpl.
 *
 * Used by: workers (transform / transform_response with input_type "xml").
 * Nothing is shared; the caller frees the result with cJSON_Delete.
 *
 * The shape, as mxj gives it: {"root": value}; an element with neither
 * attributes nor children is its trimmed text (or ""); otherwise an object
 * of "-attr" strings, children by local name (repeated ones become an
 * array, in document order) and "#text". Namespace prefixes are dropped
 * (Go's Name.Local). Values stay strings. Text met before the first child
 * or attribute-less text wins over later children, as in mxj.
 *
 * The parser is deliberately small: no DTDs (refused), no entities beyond
 * the five predefined ones and numeric references, UTF-8 only, nesting at
 * most TP_XML_MAX_DEPTH. Tyk parses an empty body as "<_/>"; the caller
 * does that substitution.
 */
#ifndef TP_XML_H
#define TP_XML_H

#include <stddef.h>

#include <cjson/cJSON.h>

#define TP_XML_MAX_DEPTH 256

/* XML text -> cJSON object; NULL with <why> (Go's wording where it has it). */
cJSON *tp_xml_to_json(const char *xml, size_t len, char *why, size_t whylen);

#endif
