/*
 * worker/tp_channel.c: messages from a worker to the master over their
 * socketpair, one per datagram ("serving 12", "reload 7", ...). The
 * master's messages are read in tp_worker.c.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "tp_log.h"
#include "tp_worker.h"

void tp_worker_tell(tp_worker_t *w, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (n > 0 && send(w->master_fd, msg, (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1,
                      MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
        tp_log_warn("cannot tell the master \"%s\": %s", msg, strerror(errno));
}
