# Developer entry points. `make test` is what CI runs (.ci/run).
# Re-runs are fast: the venv and the Kafka jars are rebuilt only when
# pyproject.toml or deploy/kafka/pom.xml change (stamp files).

PYTHON     ?= python3
VENV       := .venv
STATE_DIR  ?= $(or $(NOVACRON_STATE_DIR),.novacron)
KAFKA_LIBS := $(STATE_DIR)/kafka/libs
KAFKA_POM  := deploy/kafka/pom.xml
NOVACRON   := $(VENV)/bin/novacron
PYTEST_ARGS ?=

.PHONY: setup system-deps venv kafka-jars stack-up stack-down stack-status test demo lint \
	train-extra clean distclean

setup: system-deps venv kafka-jars

system-deps:
	@scripts/setup-system.sh

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -e '.[dev,train]'
	@touch $@

kafka-jars: $(KAFKA_LIBS)/.stamp

# Old jars go first, so that a version change never leaves two Kafkas on the classpath.
$(KAFKA_LIBS)/.stamp: $(KAFKA_POM)
	@echo "Fetching the Kafka broker's jars into $(KAFKA_LIBS) (Maven Central)..."
	@rm -rf $(KAFKA_LIBS)
	mvn -q -B -f $(KAFKA_POM) dependency:copy-dependencies -DincludeScope=runtime \
		-DoutputDirectory=$(abspath $(KAFKA_LIBS))
	@touch $@

stack-up: setup
	$(NOVACRON) stack up

stack-down:
	$(NOVACRON) stack down

stack-status:
	$(NOVACRON) stack status

test: setup stack-up lint
	@$(VENV)/bin/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	echo "The local stack is still up (make stack-down stops it)."; exit $$rc

demo: setup stack-up
	$(NOVACRON) demo $(if $(DURATION),--duration $(DURATION),)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

train-extra: venv
	$(VENV)/bin/python -m pip install -q -e '.[train,dev]'

# Build outputs and caches only; the venv and the stack's data stay.
clean:
	rm -rf build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +

# Everything: stops the stack, removes the venv, the jars and the stack's data.
distclean: clean
	-test -x $(NOVACRON) && $(NOVACRON) stack down
	rm -rf $(VENV) $(STATE_DIR)
