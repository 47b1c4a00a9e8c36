/*
 * common/tp_keyhash.h: Tyk-compatible API key IDs and the hashes they are
 * stored under in Redis (TYK-COMPAT 4.2, 4.3).
 *
 * Used by: master (REST key creation) and workers (key lookup). No state,
 * no locking: every function is reentrant. Inputs are borrowed; outputs go
 * to caller-provided buffers, except tp_key_generate, which appends to a
 * tp_buf_t the caller owns.
 *
 * Tyk sources mirrored (gateway v5.x, internal/crypto/{token,hash}.go; the
 * same code lived in storage/ before 5.8):
 *   GenerateToken, TokenOrg, TokenHashAlgo, hashFunction, HashStr, HashKey,
 *   plus gateway generateToken (auth_manager.go), which trims the org first.
 *
 * Compatibility notes, each checked against Tyk's source:
 *  - Tyk's "murmur32" is NOT MurmurHash3 x86_32. Tyk pins a fork of
 *    spaolacci/murmur3 (TykTechnologies/murmur3) whose 32-bit Sum() returns
 *    the running state after the whole 4-byte blocks: no tail bytes, no
 *    length, no finalizer. So "abcd", "abcdX" and "abcdXYZ" share a hash and
 *    any key shorter than 4 bytes hashes to 00000000 (Tyk issues #2432,
 *    #3192; Tyk's own TestMurmur3CharBug asserts it). Stored hashes only
 *    match if we do the same, so tp_keyhash_hex("murmur32") does;
 *    tp_murmur3_32() is the real algorithm, for everything else.
 *  - "murmur64" is h1 of MurmurHash3 x64_128, "murmur128" is h1 then h2,
 *    both big-endian hex; "sha256" is SHA-256. Seed 0.
 *  - hashFunction maps "" and unknown names to murmur32 in every release
 *    (an unmerged Tyk branch, TT-15098, changes unknown to murmur64).
 *    GenerateToken, in contrast, writes an unknown name as "murmur64".
 *  - GenerateToken builds its JSON with fmt.Sprintf, not json.Marshal: org
 *    and id are copied verbatim, unescaped, so a '"' in a custom key gives
 *    broken JSON. We copy verbatim too, since the base64 is the key.
 *  - Tokens are decoded with base64.StdEncoding only (padding required, '\r'
 *    and '\n' ignored, other bytes rejected; no URL or unpadded variants),
 *    and read with buger/jsonparser's GetString, whose lenient scan we
 *    reproduce (first top-level match wins, no full JSON validation).
 */
#ifndef TP_KEYHASH_H
#define TP_KEYHASH_H

#include <stddef.h>
#include <stdint.h>

#include "tp_buf.h"

/* Room for the longest hex digest (sha256, 64 chars) and its NUL. */
#define TP_KEYHASH_HEX_MAX 65

/* MurmurHash3 x86_32 of <len> bytes with <seed> (blocks read little-endian,
 * any alignment). */
uint32_t tp_murmur3_32(const void *data, size_t len, uint32_t seed);

/* MurmurHash3 x64_128 of <len> bytes with <seed>: out[0] = h1, out[1] = h2. */
void tp_murmur3_128(const void *data, size_t len, uint32_t seed, uint64_t out[2]);

/* Tyk's hash_key_function digest of <data> as lowercase hex of the big-endian
 * digest, NUL-terminated in <out>. <alg>: "murmur32" (Tyk's truncated
 * variant, see above), "murmur64", "murmur128", "sha256"; NULL, "" or any
 * other name means murmur32, as Tyk's hashFunction does.
 * Returns the number of hex characters: 8, 16, 32 or 64. */
size_t tp_keyhash_hex(const char *alg, const void *data, size_t len, char out[TP_KEYHASH_HEX_MAX]);

/* The value (0-63) of base64 symbol <c> in the alphabet whose last two
 * symbols are <s62> and <s63> ('+' '/' standard, '-' '_' URL), or -1. */
int tp_b64_symbol(unsigned char c, char s62, char s63);

/* Go's base64.StdEncoding.DecodeString of <n> bytes of <s> into <dst>
 * (room for n / 4 * 3 bytes): padding required, '\r' and '\n' skipped.
 * Returns the decoded length, or -1 where Go returns an error. */
ptrdiff_t tp_b64_std_decode(const char *s, size_t n, unsigned char *dst);

/* Tyk's generateToken(org, id, alg): the key ID a client presents.
 * A leading <org> is trimmed from <id>; an empty <id> becomes a random v4
 * UUID as 32 lowercase hex characters. <alg> NULL or "": org + id (legacy).
 * Otherwise padded standard base64 of {"org":"<org>","id":"<id>","h":"<alg>"},
 * org and id verbatim, and an <alg> other than murmur32, murmur64, murmur128
 * or sha256 written as "murmur64".
 * Appends the key to <out> (not NUL-terminated: use tp_buf_cstr); the caller
 * owns <out> and frees it with tp_buf_free.
 * Returns 0, or -errno when no random bytes could be had (nothing appended). */
int tp_key_generate(tp_buf_t *out, tp_str_t org, tp_str_t id, const char *alg);

/* Tyk's TokenOrg: the "org" string of a base64-JSON token (one starting with
 * "ey"), else the first 24 characters when the token is longer than 24 and
 * they are all hex, else "". Writes it NUL-terminated to <out>; it may hold
 * NUL bytes (from \u0000), so use the returned length.
 * A <cap> of token.n + 1 is always enough.
 * Returns the length, or -ENOSPC when <cap> is too small. */
int tp_key_token_org(tp_str_t token, char *out, size_t cap);

/* Tyk's TokenHashAlgo: the "h" string of a base64-JSON token, written like
 * tp_key_token_org writes the org (same <cap> rule).
 * Returns its length (0 for "h":""), -ENOENT when the token carries no "h"
 * string (legacy keys, Tyk's ""), or -ENOSPC. */
int tp_key_token_alg(tp_str_t token, char *out, size_t cap);

/* Tyk's HashKey(key, hash_keys): the name a session is stored under, after
 * "apikey-". Without <hash_keys>, <key> itself (borrowed, no copy). With it,
 * HashStr: the digest named by the token's "h" (murmur32 when there is none),
 * written to <out> and returned as a slice of it. */
tp_str_t tp_key_storage_hash(tp_str_t key, int hash_keys, char out[TP_KEYHASH_HEX_MAX]);

#endif
