/*
 * echo.h: what an error message repeats of a name the caller supplied (see
 * echo.c).
 */
#ifndef PERSONALIZE_ECHO_H
#define PERSONALIZE_ECHO_H

/* longest name echoed whole, in characters; a longer one is cut to ECHO_KEEP_CHARS + "..." */
#define ECHO_MAX_CHARS 64
#define ECHO_KEEP_CHARS 60

extern const char *echo_name(const char *s);

#endif							/* PERSONALIZE_ECHO_H */
