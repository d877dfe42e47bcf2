# personalize: plain PGXS build (see README.md)
EXTENSION   = personalize
EXTVERSION  = $(shell sed -n "s/^default_version = '\(.*\)'/\1/p" $(EXTENSION).control)
MODULE_big  = personalize
OBJS        = src/personalize.o src/guc.o src/spiutil.o src/similarity.o src/model_delta.o src/fold.o src/trigger.o src/id_guard.o src/variant.o src/recommend.o src/popular.o src/ranking.o src/content.o src/experiment.o src/stats.o src/http.o src/openai.o src/lifecycle.o src/cron.o src/echo.o src/health.o src/filters.o src/items.o src/explain.o src/ease_solve.o src/ease.o src/evaluate.o src/rebuild.o

# The install script of the current version is built from one file per concern
# (sql/parts/, in this order); older versions' install scripts are frozen, and every
# step between versions has its update script (sql/personalize--A--B.sql).
SQL_PARTS   = $(addprefix sql/parts/, header.sql catalog.sql model.sql variants.sql serving.sql \
                scaleout.sql refresh.sql scheduling.sql ease.sql experiments.sql shard_guard.sql cold_start.sql lifecycle.sql health.sql \
                ingest.sql retention.sql batch.sql evaluate.sql grants.sql comments.sql privileges.sql)
DATA_built  = sql/$(EXTENSION)--$(EXTVERSION).sql
DATA        = sql/personalize--0.1.0.sql sql/personalize--0.1.0--0.2.0.sql
# Prometheus (docs/monitoring.md): the exporter's queries file and the alert rules, installed
# next to the scripts, in $(pg_config --sharedir)/extension/
DATA       += contrib/prometheus/personalize-queries.yaml contrib/prometheus/personalize-alerts.yaml

# pg_regress inputs in sql/, outputs in expected/ (its defaults)
REGRESS     = install schema errors privileges search_path loader engine mixed_statements recommend timestamps first_hour experiments erasure llm_serving llm hardening echoed_names health ingest grants retention serving ranking batch evaluate
REGRESS_OPTS = --inputdir=. --outputdir=. --load-extension=plpgsql

# -Wextra as pgvector builds it: PostgreSQL's own headers have unused parameters
PG_CFLAGS   = -Wall -Wextra -Werror -Wno-unused-parameter
# EASE (src/ease_solve.c): Debian's serial OpenBLAS, linked by its own directory with an rpath,
# so that the libblas.so.3 / libopenblas.so.0 alternatives (a threaded build, reference BLAS)
# never replace it: no threads in a backend (docs/design.md, "EASE")
MULTIARCH  ?= $(shell $(CC) -print-multiarch)
OPENBLAS_LIB ?= /usr/lib/$(MULTIARCH)/openblas-serial
OPENBLAS_INC ?= /usr/include/$(MULTIARCH)/openblas-serial
PG_CPPFLAGS = -I$(OPENBLAS_INC)
SHLIB_LINK  = -lcurl -L$(OPENBLAS_LIB) -lopenblas -Wl,-rpath,$(OPENBLAS_LIB)
EXTRA_CLEAN = results/ regression.diffs regression.out

PG_CONFIG  ?= pg_config
PGXS       := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

sql/$(EXTENSION)--$(EXTVERSION).sql: $(SQL_PARTS) $(EXTENSION).control
	{ echo '-- personalize $(EXTVERSION): product recommendations inside PostgreSQL.'; cat $(SQL_PARTS); } > $@
