/*
 * master/tp_main.c: the command line.
 *
 *   turnpike [start] [--conf FILE] [--port N] [--debug]   run the gateway
 *   turnpike -t [--conf FILE]                               test the configuration
 *   turnpike --dump-config [--conf FILE]                    test, then print it *   turnpike
 * --version turnpike ctl [--socket PATH | --conf FILE] <command>    talk to the admin socket
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>
#include <hiredis/hiredis.h>
#include <llhttp.h>
#include <mbedtls/version.h>
#include <uv.h>

#include "tp_conf.h"
#include "tp_err.h"
#include "tp_log.h"
#include "tp_master.h"

static void usage(FILE *out)
{
    fprintf(out, "usage: turnpike [start] [options]\n"
                 "\n"
                 "A Tyk-compatible API gateway. Reads Tyk's tyk.conf and classic API definitions.\n"
                 "\n"
                 "options:\n"
                 "  --conf FILE, --conf=FILE  tyk.conf to load (default: ./tyk.conf, then\n"
                 "                            /etc/tyk/tyk.conf)\n"
                 "  --port N                  override listen_port\n"
                 "  --debug                   log at debug level\n"
                 "  -t, --test                test the configuration and every API definition,\n"
                 "                            then exit 0 (valid) or 1 (not); binds nothing\n"
                 "  --dump-config             like -t, then print the effective configuration\n"
                 "                            (secrets masked)\n"
                 "  --check-redis             connect to Redis with the storage settings, run\n"
                 "                            PING and a write/read/delete, report, exit 0 or 1\n"
                 "  -v, --version             print the version and the linked library versions\n"
                 "  -h, --help                this text\n"
                 "\n"
                 "turnpike ctl [--socket PATH | --conf FILE] <command>  runs an admin socket\n"
                 "command (help, show info, show workers, show apis, show stat, reload, drain,\n"
                 "undrain, set loglevel <level>) and prints the answer\n"
                 "\n"
                 "Environment: TYK_GW_* variables override tyk.conf as in Tyk (Go field names,\n"
                 "e.g. TYK_GW_LISTENPORT, TYK_GW_STORAGE_HOST); Turnpike's own settings live in\n"
                 "the \"turnpike\" object (TYK_GW_TURNPIKE_WORKERS, ...).\n");
}

static void version(void)
{
    unsigned v = uv_version();
    printf("turnpike %s\n", TP_VERSION);
    printf("  libuv %u.%u.%u\n", (v >> 16) & 0xff, (v >> 8) & 0xff, v & 0xff);
    printf("  llhttp %d.%d.%d\n", LLHTTP_VERSION_MAJOR, LLHTTP_VERSION_MINOR, LLHTTP_VERSION_PATCH);
    printf("  hiredis %d.%d.%d\n", HIREDIS_MAJOR, HIREDIS_MINOR, HIREDIS_PATCH);
    printf("  cJSON %s\n", cJSON_Version());
    char mbed[32];
    mbedtls_version_get_string(mbed);
    printf("  mbedTLS %s\n", mbed);
}

/* Applies log settings: TYK_LOGLEVEL / TYK_LOGFORMAT win over tyk.conf, as
 * in Tyk. */
static void setup_logging(const tp_conf_t *conf, int debug)
{
    const char *lvl = getenv("TYK_LOGLEVEL");
    if (lvl == NULL || tp_log_level_parse(lvl) < 0)
        lvl = conf ? conf->log_level : "info";
    tp_log_g.level = debug ? TP_LOG_DEBUG : tp_log_level_parse(lvl);
    if (tp_log_g.level < 0)
        tp_log_g.level = TP_LOG_INFO;
    const char *fmt = getenv("TYK_LOGFORMAT");
    if (fmt == NULL)
        fmt = getenv("TYK_GW_LOGFORMAT");
    if (fmt == NULL && conf != NULL)
        fmt = conf->log_format;
    tp_log_g.json = fmt != NULL && strcasecmp(fmt, "json") == 0;
}

int main(int argc, char **argv)
{
    const char *conf_arg = NULL, *port_arg = NULL;
    int test = 0, dump = 0, debug = 0, check_redis = 0;

    if (argc > 1 && strcmp(argv[1], "ctl") == 0)
        return tp_ctl_main(argc - 2, argv + 2);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "start") == 0 && i == 1)
            continue;
        if (strcmp(a, "--conf") == 0 || strcmp(a, "-c") == 0) {
            if (++i >= argc) {
                fprintf(stderr, "turnpike: %s needs a file name\n", a);
                return 2;
            }
            conf_arg = argv[i];
        } else if (strncmp(a, "--conf=", 7) == 0) {
            conf_arg = a + 7;
        } else if (strcmp(a, "--port") == 0) {
            if (++i >= argc) {
                fprintf(stderr, "turnpike: --port needs a number\n");
                return 2;
            }
            port_arg = argv[i];
        } else if (strncmp(a, "--port=", 7) == 0) {
            port_arg = a + 7;
        } else if (strcmp(a, "-t") == 0 || strcmp(a, "--test") == 0) {
            test = 1;
        } else if (strcmp(a, "--dump-config") == 0 || strcmp(a, "-T") == 0) {
            test = dump = 1;
        } else if (strcmp(a, "--check-redis") == 0) {
            check_redis = 1;
        } else if (strcmp(a, "--debug") == 0) {
            debug = 1;
        } else if (strcmp(a, "-v") == 0 || strcmp(a, "--version") == 0 ||
                   strcmp(a, "version") == 0) {
            version();
            return 0;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "turnpike: unknown argument \"%s\"\n\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (port_arg != NULL) {
        char *end;
        long p = strtol(port_arg, &end, 10);
        if (*port_arg == '\0' || *end != '\0' || p < 1 || p > 65535) {
            fprintf(stderr, "turnpike: --port: expected a port number, got \"%s\"\n", port_arg);
            return 2;
        }
        /* Tyk's --port overrides listen_port, above the environment too */
        setenv("TYK_GW_LISTENPORT", port_arg, 1);
    }

    const char *conf_path = tp_conf_find(conf_arg);
    setup_logging(NULL, debug);
    tp_log_set_role("master");

    /* A first, silent pass learns the log settings, so that even the
     * loader's warnings come out in the configured format. */
    {
        tp_conf_t probe;
        char ignore[64];
        int saved = tp_log_g.level;
        tp_log_g.level = -1;
        if (tp_conf_load(conf_path, &probe, ignore, sizeof(ignore)) == 0)
            setup_logging(&probe, debug);
        else
            tp_log_g.level = saved;
        tp_conf_free(&probe);
    }

    char err[16384];
    if (check_redis) {
        tp_conf_t conf;
        if (tp_conf_load(conf_path, &conf, err, sizeof(err)) < 0) {
            for (char *line = strtok(err, "\n"); line != NULL; line = strtok(NULL, "\n"))
                tp_log_error("%s", line);
            return 1;
        }
        int rc = tp_check_redis(&conf);
        tp_conf_free(&conf);
        return rc;
    }
    tp_gen_t *gen = tp_calloc(1, sizeof(*gen));
    if (tp_gen_load(gen, conf_path, 0, err, sizeof(err)) < 0) {
        for (char *line = strtok(err, "\n"); line != NULL; line = strtok(NULL, "\n"))
            tp_log_error("%s", line);
        tp_log_error("configuration test failed");
        free(gen);
        return 1;
    }
    if (test) {
        int ok = gen->apis.nerrors == 0;
        if (dump) {
            char *out = tp_conf_dump(&gen->conf);
            printf("%s\n", out);
            free(out);
        }
        if (ok)
            tp_log_info("configuration %s is valid: %zu API definitions loaded from %s, "
                        "%zu policies",
                        gen->conf.file, gen->apis.n, gen->conf.app_path, gen->policies.n);
        else
            tp_log_error("configuration test failed: %zu API definitions in %s are invalid",
                         gen->apis.nerrors, gen->conf.app_path);
        tp_gen_free(gen);
        free(gen);
        return ok ? 0 : 1;
    }
    return tp_master_run(conf_path, gen);
}
