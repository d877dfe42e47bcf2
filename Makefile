# personalize: plain PGXS build (see README.md)
EXTENSION   = personalize
EXTVERSION  = $(shell sed -n "s/^default_version = '\(.*\)'/\1/p" $(EXTENSION).control)
MODULE_big  = personalize
OBJS        = src/personalize.o src/guc.o src/spiutil.o src/similarity.o src/model_delta.o src/trigger.o src/id_guard.o src/variant.o src/recommend.o src/content.o src/experiment.o src/stats.o src/http.o src/openai.o src/lifecycle.o src/cron.o src/echo.o src/health.o src/filters.o src/items.o src/explain.o src/evaluate.o

# The install script of the current version is built from one file per concern
# (sql/parts/, in this order); older versions' install scripts are frozen, and every
# step between versions has its update script (sql/personalize--A--B.sql).
SQL_PARTS   = $(addprefix sql/parts/, header.sql catalog.sql model.sql variants.sql serving.sql \
                refresh.sql scheduling.sql experiments.sql cold_start.sql lifecycle.sql health.sql \
                ingest.sql retention.sql batch.sql evaluate.sql grants.sql comments.sql privileges.sql)
DATA_built  = sql/$(EXTENSION)--$(EXTVERSION).sql
DATA        = sql/personalize--0.1.0.sql sql/personalize--0.1.0--0.2.0.sql
# Prometheus (docs/monitoring.md): the exporter's queries file and the alert rules, installed
# next to the scripts, in $(pg_config --sharedir)/extension/
DATA       += contrib/prometheus/personalize-queries.yaml contrib/prometheus/personalize-alerts.yaml

# pg_regress inputs in sql/, outputs in expected/ (its defaults)
REGRESS     = install schema errors privileges search_path loader engine mixed_statements recommend timestamps first_hour experiments erasure llm_serving llm hardening echoed_names health ingest grants retention serving batch evaluate
REGRESS_OPTS = --inputdir=. --outputdir=. --load-extension=plpgsql

# -Wextra as pgvector builds it: PostgreSQL's own headers have unused parameters
PG_CFLAGS   = -Wall -Wextra -Werror -Wno-unused-parameter
SHLIB_LINK  = -lcurl
EXTRA_CLEAN = results/ regression.diffs regression.out

PG_CONFIG  ?= pg_config
PGXS       := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

sql/$(EXTENSION)--$(EXTVERSION).sql: $(SQL_PARTS) $(EXTENSION).control
	{ echo '-- personalize $(EXTVERSION): product recommendations inside PostgreSQL.'; cat $(SQL_PARTS); } > $@
