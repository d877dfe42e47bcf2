/*
 * evaluate.h: recommend() as of a past cut, for personalize.evaluate() and
 * personalize.tune() (see evaluate.c). The module exports only its SQL entry
 * point; the switch of the model it reads lives with the kept plans
 * (spiutil.h, spi_read_evaluation_model()).
 */
#ifndef PERSONALIZE_EVALUATE_H
#define PERSONALIZE_EVALUATE_H

extern Datum personalize_recommend_at_cut(PG_FUNCTION_ARGS);

#endif							/* PERSONALIZE_EVALUATE_H */
