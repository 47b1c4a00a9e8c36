/*
 * shm/tp_shm_map.h: one shared anonymous mapping, as every shared table
 * is made (MAP_SHARED|MAP_ANONYMOUS|MAP_NORESERVE: inherited by the
 * workers the master forks, untouched pages cost nothing).
 */
#ifndef TP_SHM_MAP_H
#define TP_SHM_MAP_H

#include <stddef.h>

/* <size> zeroed bytes, or NULL with "cannot map N bytes for <what>: why". */
void *tp_shm_map(size_t size, const char *what, char *err, size_t errlen);

#endif
