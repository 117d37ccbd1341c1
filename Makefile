# Dockyard: `make run` starts the daemon and runs a first container; `make test` runs the suite.
# Both install what is missing first (Debian packages, the virtualenv), so they work on a
# fresh Debian 12 machine as root.

APT_PACKAGES := runc conmon busybox-static tini nftables iproute2 docker.io docker-registry skopeo gcc libc6-dev git etcd-server etcd-client
PYTHON       ?= python3
VENV         := .venv
BIN          := $(VENV)/bin
SOCKET       ?= /run/dockyard.sock
DATA_ROOT    ?= /var/lib/dockyard
PIDFILE      ?= /run/dockyard.pid
LOGFILE      ?= /var/log/dockyard.log
PYTEST_ARGS  ?=

.PHONY: deps apt criu venv run stop test clean-test

deps: apt criu venv

apt:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# CRIU for checkpoint/restore: Debian 12's 3.17 fails on recent kernels, so the script builds
# Debian trixie's source package (about a minute, cached under /var/cache/dockyard/criu),
# only when no criu >= 4.1 passing `criu check` is installed.
criu: apt
	@scripts/install-criu.sh

$(BIN)/dockyardd: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

venv: $(BIN)/dockyardd

# Start dockyardd in the background (unless it already answers), make the busybox image
# locally from Debian's static busybox, and run a first container.
run: deps
	@if ! $(BIN)/dockyard -H unix://$(SOCKET) version >/dev/null 2>&1; then \
		echo "starting dockyardd (data root $(DATA_ROOT), socket $(SOCKET), log $(LOGFILE))"; \
		nohup $(BIN)/dockyardd -H unix://$(SOCKET) --data-root $(DATA_ROOT) --pidfile $(PIDFILE) \
			>>$(LOGFILE) 2>&1 & \
		for i in $$(seq 100); do \
			$(BIN)/dockyard -H unix://$(SOCKET) version >/dev/null 2>&1 && break; sleep 0.1; \
		done; \
	fi
	@$(BIN)/dockyard -H unix://$(SOCKET) image inspect busybox:latest >/dev/null 2>&1 || \
		scripts/busybox-rootfs.sh | $(BIN)/dockyard -H unix://$(SOCKET) import -c 'CMD ["sh"]' - busybox:latest
	$(BIN)/dockyard -H unix://$(SOCKET) run --rm busybox echo hello from dockyard

stop:
	@if [ -f $(PIDFILE) ]; then kill $$(cat $(PIDFILE)) && echo "stopped dockyardd"; fi

test: deps
	$(BIN)/python -m pytest tests -q $(PYTEST_ARGS)
