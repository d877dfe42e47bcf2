/*
 * lifecycle.h: what ties the library to the installed SQL (lifecycle.c): the
 * version check of entry points whose SQL changed, and the guard that keeps
 * DROP EXTENSION from deleting the shop's data without a confirmation.
 */
#ifndef PERSONALIZE_LIFECYCLE_H
#define PERSONALIZE_LIFECYCLE_H

/* the release this library was built for (the control file's default_version) */
#define PERSONALIZE_LIBRARY_VERSION "0.2.0"

extern void personalize_require_sql_version(const char *needed, Oid fn_oid);

#endif							/* PERSONALIZE_LIFECYCLE_H */
