/*
 * spiutil.h: small SPI and array helpers shared by the trigger, recommend(),
 * experiments and content neighbours (see spiutil.c).
 */
#ifndef PERSONALIZE_SPIUTIL_H
#define PERSONALIZE_SPIUTIL_H

extern void spi_read_evaluation_model(bool on);
extern bool spi_reading_evaluation_model(void);
extern SPIPlanPtr spi_kept(SPIPlanPtr *cache);
extern SPIPlanPtr spi_prepare_kept(SPIPlanPtr *cache, const char *sql, int nargs, Oid *argtypes);
extern int	spi_execute_kept(SPIPlanPtr plan, Datum *values, bool read_only, long tcount);
extern Datum int8_array_datum(const int64 *values, int n);
extern Datum int4_array_datum(const int32 *values, int n);
extern Datum float8_array_datum(const double *values, int n);
extern Datum bool_array_datum(const bool *values, int n);
extern Datum timestamptz_array_datum(const TimestampTz *values, int n);
extern int64 spi_int8(int row, int col, int64 if_null);
extern double spi_float8(int row, int col, double if_null);

#endif							/* PERSONALIZE_SPIUTIL_H */
