/*
 * ease.h: the EASE model's limits (ease.c), shared with the settings (guc.c).
 */
#ifndef PERSONALIZE_EASE_H
#define PERSONALIZE_EASE_H

/* products in the model: 50,000 are a 20 GB matrix (8 n^2 bytes) */
#define EASE_MIN_PRODUCTS 2
#define EASE_MAX_PRODUCTS 50000
/* list length */
#define EASE_MAX_K 10000

#endif							/* PERSONALIZE_EASE_H */
