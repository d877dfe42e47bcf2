# personalize: plain PGXS build (see README.md)
EXTENSION   = personalize
MODULE_big  = personalize
OBJS        = src/personalize.o src/guc.o src/spiutil.o src/similarity.o src/model_delta.o src/trigger.o src/variant.o src/recommend.o src/content.o src/experiment.o src/stats.o src/http.o src/openai.o
DATA        = sql/personalize--0.1.0.sql

# pg_regress inputs in sql/, outputs in expected/ (its defaults)
REGRESS     = install schema errors privileges search_path loader engine recommend experiments llm_serving llm
REGRESS_OPTS = --inputdir=. --outputdir=. --load-extension=plpgsql

# -Wextra as pgvector builds it: PostgreSQL's own headers have unused parameters
PG_CFLAGS   = -Wall -Wextra -Werror -Wno-unused-parameter
SHLIB_LINK  = -lcurl
EXTRA_CLEAN = results/ regression.diffs regression.out

PG_CONFIG  ?= pg_config
PGXS       := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)
