/* test/unit/test_redis.c: cluster slots, key positions, redirections. */
#include "tp_redis.h"
#include "tp_test.h"

#define SLOT(s) tp_redis_slot((s), strlen(s))

/* Values from the Redis Cluster specification and `CLUSTER KEYSLOT`. */
TP_TEST(slots_match_redis)
{
    CHECK_INT(SLOT("foo"), 12182);
    CHECK_INT(SLOT("bar"), 5061);
    CHECK_INT(SLOT("123456789"), 0x31c3 & 16383);
    CHECK_INT(SLOT(""), 0);
    CHECK_INT(SLOT("apikey-9f2a1c3e"), tp_redis_slot("apikey-9f2a1c3e", 15));
}

TP_TEST(hash_tags)
{
    /* only what is inside the first {...} counts, when it is not empty */
    CHECK_INT(SLOT("{user1000}.following"), SLOT("{user1000}.followers"));
    CHECK_INT(SLOT("{user1000}.following"), SLOT("user1000"));
    CHECK_INT(SLOT("foo{bar}{zap}"), SLOT("bar"));
    CHECK_INT(SLOT("foo{{bar}}zap"), SLOT("{bar"));
    /* an empty tag hashes the whole key */
    CHECK_INT(SLOT("foo{}{bar}"), tp_redis_slot("foo{}{bar}", 10));
    CHECK(SLOT("foo{}{bar}") != SLOT("bar"));
    /* an unclosed brace hashes the whole key */
    CHECK(SLOT("foo{bar") != SLOT("bar"));
    CHECK_INT(SLOT("quota-{abc}"), SLOT("rate-limit-{abc}"));
}

TP_TEST(key_positions)
{
    CHECK_INT(tp_redis_key_index("GET", 3, 2), 1);
    CHECK_INT(tp_redis_key_index("set", 3, 4), 1);
    CHECK_INT(tp_redis_key_index("EVALSHA", 7, 5), 3);
    CHECK_INT(tp_redis_key_index("evalsha", 7, 3), -1); /* numkeys 0, no key */
    CHECK_INT(tp_redis_key_index("EVAL", 4, 4), 3);
    CHECK_INT(tp_redis_key_index("PING", 4, 1), -1);
    CHECK_INT(tp_redis_key_index("PUBLISH", 7, 3), -1);
    CHECK_INT(tp_redis_key_index("SCAN", 4, 2), -1);
    CHECK_INT(tp_redis_key_index("CLUSTER", 7, 2), -1);
    CHECK_INT(tp_redis_key_index("DEL", 3, 1), -1);
}

TP_TEST(redirect_errors)
{
    unsigned slot = 0;
    char addr[64];
    CHECK_INT(tp_redis_parse_redirect("MOVED 3999 127.0.0.1:6381", &slot, addr, sizeof(addr)), 1);
    CHECK_INT(slot, 3999);
    CHECK_STR(addr, "127.0.0.1:6381");
    CHECK_INT(tp_redis_parse_redirect("ASK 16383 [::1]:7000", &slot, addr, sizeof(addr)), 2);
    CHECK_INT(slot, 16383);
    CHECK_STR(addr, "[::1]:7000");
    CHECK_INT(tp_redis_parse_redirect("MOVED 16384 h:1", &slot, addr, sizeof(addr)), 0);
    CHECK_INT(tp_redis_parse_redirect("MOVED x h:1", &slot, addr, sizeof(addr)), 0);
    CHECK_INT(tp_redis_parse_redirect("MOVED 12 nohostport", &slot, addr, sizeof(addr)), 0);
    CHECK_INT(tp_redis_parse_redirect("ERR unknown command", &slot, addr, sizeof(addr)), 0);
    CHECK_INT(tp_redis_parse_redirect("MOVED 1 averyveryveryveryverylonghostname.example:6379",
                                      &slot, addr, 16),
              0);
}

void test_redis_suite(void)
{
    TP_RUN(slots_match_redis);
    TP_RUN(hash_tags);
    TP_RUN(key_positions);
    TP_RUN(redirect_errors);
}
