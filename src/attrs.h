/*
 * attrs.h: compiler attribute macros shared by every module.
 */
#ifndef GCDROP_ATTRS_H
#define GCDROP_ATTRS_H

#define GC_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#define GC_WUR __attribute__((warn_unused_result))
#define GC_NORETURN __attribute__((noreturn))
#define GC_UNUSED __attribute__((unused))

#define GC_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#endif
