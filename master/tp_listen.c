/* master/tp_listen.c: listening sockets shared by workers via SO_REUSEPORT. */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tp_master.h"

static int open_one(const char *addr, int port, int reuseport, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char portstr[8];
    snprintf(portstr, sizeof(portstr), "%d", port);
    int any = addr == NULL || addr[0] == '\0';
    int rc = getaddrinfo(any ? "::" : addr, portstr, &hints, &res);
    if (rc != 0 && any)
        rc = getaddrinfo("0.0.0.0", portstr, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "listen_address \"%s\": %s", any ? "" : addr, gai_strerror(rc));
        return -1;
    }
    int fd = socket(res->ai_family, res->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 && any && res->ai_family == AF_INET6) {
        /* no IPv6 on this host: fall back to IPv4 only */
        freeaddrinfo(res);
        res = NULL;
        if (getaddrinfo("0.0.0.0", portstr, &hints, &res) != 0) {
            snprintf(err, errlen, "cannot create a listening socket: %s", strerror(errno));
            return -1;
        }
        fd = socket(res->ai_family, res->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    }
    if (fd < 0) {
        snprintf(err, errlen, "cannot create a listening socket: %s", strerror(errno));
        freeaddrinfo(res);
        return -1;
    }
    int one = 1, zero = 0;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
        snprintf(err, errlen, "SO_REUSEPORT: %s", strerror(errno));
        goto err;
    }
    if (res->ai_family == AF_INET6 && any)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
    if (bind(fd, res->ai_addr, res->ai_addrlen) != 0) {
        snprintf(err, errlen, "cannot listen on %s:%d: %s", any ? "*" : addr, port,
                 strerror(errno));
        goto err;
    }
    if (listen(fd, 4096) != 0) {
        snprintf(err, errlen, "listen on %s:%d: %s", any ? "*" : addr, port, strerror(errno));
        goto err;
    }
    freeaddrinfo(res);
    return fd;
err:
    close(fd);
    freeaddrinfo(res);
    return -1;
}

int tp_listen_open(const char *addr, int port, char *err, size_t errlen)
{
    return open_one(addr, port, 1, err, errlen);
}

int tp_listen_probe(const char *addr, int port, char *err, size_t errlen)
{
    int fd = open_one(addr, port, 0, err, errlen);
    if (fd < 0)
        return -1;
    close(fd);
    return 0;
}
