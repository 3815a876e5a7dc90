/* lua_embed.h - the Lua modules under lua/luring, compiled into the binary
 * (generated table, see cmake/embed_lua.cmake). */
#ifndef LURING_LUA_EMBED_H
#define LURING_LUA_EMBED_H

#include <stddef.h>

struct lua_embed {
    const char *name; /* module name for require() */
    const char *src;
    size_t len;
};

/** Terminated by an entry with name NULL. */
extern const struct lua_embed lua_embedded[];

#endif
