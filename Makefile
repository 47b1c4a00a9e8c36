# Turnpike: a Tyk-compatible API gateway in C.
#
#   make            build build/turnpike
#   make run        install what is missing, build, run the gateway with conf/tyk.conf
#   make test       install what is missing, build, run every test
#   make SANITIZER=address|undefined|asan   instrumented build (asan: address and
#                   undefined together); binaries get a -<sanitizer> suffix
#   make sanitize   the unit and integration tests on the asan build
#   make V=1        show full commands
#   make install    build/turnpike to $(DESTDIR)$(PREFIX)/bin (PREFIX=/usr/local)
#   make install-systemd  also conf/turnpike.service to $(DESTDIR)$(UNITDIR) and
#                   conf/tyk.opt.conf to $(DESTDIR)/opt/tyk-gateway/tyk.conf (kept if present)

VERSION      := 0.1.0
CC           ?= cc
SANITIZER    ?=
PYTHON       := /usr/bin/python3
PREFIX       ?= /usr/local
DESTDIR      ?=
UNITDIR      ?= /etc/systemd/system

BUILD        := build
OBJDIR       := $(BUILD)/obj$(if $(SANITIZER),-$(SANITIZER))
LLHTTP_DIR   := /usr/share/llhttp
LLHTTP_INC   := /usr/share/include/llhttp
DUK_DIR      := /usr/share/duktape
DUK_GEN      := $(BUILD)/duktape

WARN         := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wno-missing-field-initializers
CFLAGS_ALL   := -std=c11 -D_GNU_SOURCE -O2 -g -fno-strict-aliasing $(WARN) \
                -DTP_VERSION='"$(VERSION)"' -Icommon -Iconf -Ishm -Iworker -Imaster -I$(DUK_GEN) -I$(LLHTTP_INC) \
                $(CFLAGS)
LDLIBS_ALL   := -luv -lcjson -lhiredis -lmbedtls -lmbedx509 -lmbedcrypto -lcrypt -lpthread -lm $(LDLIBS)
comma        := ,
SANFLAGS     := $(if $(filter asan,$(SANITIZER)),address$(comma)undefined,$(SANITIZER))
ifneq ($(SANITIZER),)
CFLAGS_ALL   += -fsanitize=$(SANFLAGS) -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS      += -fsanitize=$(SANFLAGS)
endif

LLHTTP_CFLAGS := -O2 -g -w -DLLHTTP_STRICT_MODE=1 -I$(LLHTTP_INC) $(if $(SANITIZER),-fsanitize=$(SANFLAGS))

ifeq ($(V),1)
Q :=
else
Q := @
endif

SRC          := $(wildcard common/*.c conf/*.c shm/*.c worker/*.c master/*.c)
MAIN_SRC     := master/tp_main.c
LIB_SRC      := $(filter-out $(MAIN_SRC),$(SRC))
LIB_OBJ      := $(LIB_SRC:%.c=$(OBJDIR)/%.o)
MAIN_OBJ     := $(MAIN_SRC:%.c=$(OBJDIR)/%.o)
LLHTTP_OBJ   := $(OBJDIR)/llhttp/api.o $(OBJDIR)/llhttp/http.o $(OBJDIR)/llhttp/llhttp.o
# before the library on link lines: it calls back into it (tp_js_interrupted)
DUK_OBJ      := $(BUILD)/duktape/duktape.o
UNIT_SRC     := $(wildcard test/unit/*.c)
UNIT_OBJ     := $(UNIT_SRC:%.c=$(OBJDIR)/%.o)

TOOL_SRC     := $(wildcard test/tools/*.c) $(wildcard bench/*.c)
TOOL_BIN     := $(patsubst %.c,$(BUILD)/%$(if $(SANITIZER),-$(SANITIZER)),$(notdir $(TOOL_SRC)))
BIN          := $(BUILD)/turnpike$(if $(SANITIZER),-$(SANITIZER))
UNIT_BIN     := $(BUILD)/test_unit$(if $(SANITIZER),-$(SANITIZER))
LIB          := $(OBJDIR)/libturnpike.a

# Debian packages: build, run and test dependencies.
DEPS_BUILD   := gcc make pkg-config libuv1-dev libhiredis-dev libcjson-dev libmbedtls-dev libcrypt-dev node-llhttp duktape-dev
DEPS_RUN     := redis-server libjs-underscore
DEPS_TEST    := nginx-light wrk curl valgrind openssl redis-tools clang-format python3-pytest python3-requests python3-redis python3-msgpack \
                python3-yaml nodejs systemd strace util-linux
# npm for the Kubernetes schema test (test/integration/k8s/npm-install.sh); a nodejs
# from NodeSource ships its own npm and conflicts with Debian's npm package
DEPS_TEST    += $(if $(shell command -v npm),,npm)

.PHONY: all deps run test unit integration bench clean format format-check sanitize tools valgrind-unit \
        install install-systemd

all: $(BIN)

$(BIN): $(MAIN_OBJ) $(DUK_OBJ) $(LIB) $(LLHTTP_OBJ)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $(MAIN_OBJ) $(DUK_OBJ) $(LIB) $(LLHTTP_OBJ) $(LDLIBS_ALL)

$(LIB): $(LIB_OBJ)
	@echo "  AR      $@"
	$(Q)rm -f $@ && ar rcs $@ $^

$(OBJDIR)/%.o: %.c $(OBJDIR)/.flags
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	$(Q)$(CC) $(CFLAGS_ALL) -MMD -MP -c -o $@ $<

# llhttp comes from Debian's node-llhttp sources, built with its own flags:
# it is not our code and does not pass our warning set. Strict mode makes it
# check the CRLF after chunk data and reject a bare CR ending a header line;
# without it both slip through (request smuggling).
$(OBJDIR)/llhttp/%.o: $(LLHTTP_DIR)/%.c $(OBJDIR)/.flags
	@mkdir -p $(dir $@)
	@echo "  CC      llhttp/$*.c"
	$(Q)$(CC) $(LLHTTP_CFLAGS) -c -o $@ $<

# Duktape (the JavaScript middleware's engine) comes from Debian's
# duktape-dev sources, copied into build/duktape with its configuration
# changed in two places: the executor's interrupt counter and an
# execution-timeout hook (worker/tp_js.c's tp_js_interrupted) are on, so
# jsvm_timeout can stop a script. Not our code: its own flags, no sanitizer.
$(DUK_GEN)/duk_config.h: $(DUK_DIR)/duk_config.h
	@mkdir -p $(DUK_GEN)
	@echo "  GEN     $@"
	$(Q)cp $(DUK_DIR)/duktape.c $(DUK_DIR)/duktape.h $(DUK_GEN)/
	$(Q)sed -e 's/^#undef DUK_USE_INTERRUPT_COUNTER$$/#define DUK_USE_INTERRUPT_COUNTER/' \
	    -e 's/^#undef DUK_USE_EXEC_TIMEOUT_CHECK$$/int tp_js_interrupted(void *udata);\n#define DUK_USE_EXEC_TIMEOUT_CHECK(udata) tp_js_interrupted(udata)/' \
	    $< > $@.tmp
	$(Q)grep -q '^#define DUK_USE_EXEC_TIMEOUT_CHECK' $@.tmp && grep -q '^#define DUK_USE_INTERRUPT_COUNTER' $@.tmp
	$(Q)mv $@.tmp $@

$(BUILD)/duktape/duktape.o: $(DUK_GEN)/duk_config.h
	@echo "  CC      duktape/duktape.c"
	$(Q)$(CC) -O2 -g -w -c -o $@ $(DUK_GEN)/duktape.c

$(LIB_OBJ) $(MAIN_OBJ) $(UNIT_OBJ): | $(DUK_GEN)/duk_config.h

# Rebuild everything when the flags change.
$(OBJDIR)/.flags: FORCE
	@mkdir -p $(OBJDIR)
	@echo '$(CC) $(CFLAGS_ALL) $(LLHTTP_CFLAGS)' | cmp -s - $@ || echo '$(CC) $(CFLAGS_ALL) $(LLHTTP_CFLAGS)' > $@

$(UNIT_BIN): $(UNIT_OBJ) $(DUK_OBJ) $(LIB) $(LLHTTP_OBJ)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $(UNIT_OBJ) $(DUK_OBJ) $(LIB) $(LLHTTP_OBJ) $(LDLIBS_ALL)

# test/tools/x.c and bench/x.c become build/x, linked with the library
define tool_rule
$(BUILD)/$(basename $(notdir $(1)))$(if $(SANITIZER),-$(SANITIZER)): $(OBJDIR)/$(1:.c=.o) $(DUK_OBJ) $(LIB) $(LLHTTP_OBJ)
	@echo "  LD      $$@"
	$(Q)$(CC) $(LDFLAGS) -o $$@ $$< $(DUK_OBJ) $(LIB) $(LLHTTP_OBJ) $(LDLIBS_ALL)
endef
$(foreach t,$(TOOL_SRC),$(eval $(call tool_rule,$(t))))

# the allocation counter the tests preload (not with a sanitizer, which has its own allocator)
ALLOC_SO := $(if $(SANITIZER),,$(BUILD)/libtp_alloccount.so)
$(BUILD)/libtp_alloccount.so: test/alloc/tp_alloccount.c
	@mkdir -p $(BUILD)
	@echo "  LD      $@"
	$(Q)$(CC) -std=c11 -D_GNU_SOURCE -O2 -fPIC -shared $(WARN) -o $@ $< -lpthread

tools: $(TOOL_BIN) $(ALLOC_SO)

FORCE:

deps:
	@bash test/install-deps.sh $(DEPS_BUILD) $(DEPS_RUN) $(DEPS_TEST)

run: deps
	@$(MAKE) --no-print-directory all
	@bash conf/run-sample.sh $(BIN)

unit: $(UNIT_BIN)
	@echo "  UNIT    $(UNIT_BIN)"
	$(Q)cd test/unit && ../../$(UNIT_BIN)

integration: $(BIN) $(TOOL_BIN) $(ALLOC_SO)
	@echo "  PYTEST  test/integration"
	$(Q)TURNPIKE_BIN=$(abspath $(BIN)) TURNPIKE_TOOLS=$(abspath $(BUILD)) $(PYTHON) -m pytest -q -p no:cacheprovider test/integration $(PYTEST_ARGS)

test: deps
	@$(MAKE) --no-print-directory format-check
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory valgrind-unit
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory integration
	@$(MAKE) --no-print-directory sanitize

valgrind-unit: $(UNIT_BIN)
	@echo "  VALGRIND $(UNIT_BIN)"
	$(Q)cd test/unit && valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect \
		../../$(UNIT_BIN) >/dev/null

# The deployment checks (manifests, Dockerfile, systemd unit, PID 1) run in
# the plain pass only: they test files and process handling, not memory.
SANITIZE_SKIP := --ignore=test/integration/test_k8s.py --ignore=test/integration/test_deploy.py

sanitize:
	@$(MAKE) --no-print-directory SANITIZER=asan all unit
	@$(MAKE) --no-print-directory SANITIZER=asan integration PYTEST_ARGS="$(SANITIZE_SKIP) $(PYTEST_ARGS)"

bench: all
	@bash bench/run.sh

format:
	@clang-format -i $(SRC) $(UNIT_SRC) $(TOOL_SRC) $(wildcard */*.h test/unit/*.h)

format-check:
	@if command -v clang-format >/dev/null; then \
		clang-format --dry-run -Werror $(SRC) $(UNIT_SRC) $(TOOL_SRC) $(wildcard */*.h test/unit/*.h) && echo "  FORMAT  ok"; \
	else echo "  FORMAT  skipped (no clang-format)"; fi

install: $(BIN)
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/turnpike

# The unit runs $(PREFIX)/bin/turnpike with /opt/tyk-gateway/tyk.conf, as the
# container image does; the "turnpike" system user is created by hand (README).
install-systemd: install
	install -d $(DESTDIR)$(UNITDIR) $(DESTDIR)/opt/tyk-gateway/apps $(DESTDIR)/opt/tyk-gateway/policies
	sed 's|/usr/local/bin/turnpike|$(PREFIX)/bin/turnpike|g' conf/turnpike.service > $(DESTDIR)$(UNITDIR)/turnpike.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/turnpike.service
	test -e $(DESTDIR)/opt/tyk-gateway/tyk.conf || install -m 0640 conf/tyk.opt.conf $(DESTDIR)/opt/tyk-gateway/tyk.conf
	test -e $(DESTDIR)/opt/tyk-gateway/policies/policies.json || \
		echo '{}' > $(DESTDIR)/opt/tyk-gateway/policies/policies.json

clean:
	rm -rf $(BUILD)

-include $(LIB_OBJ:.o=.d) $(MAIN_OBJ:.o=.d) $(UNIT_OBJ:.o=.d) $(TOOL_SRC:%.c=$(OBJDIR)/%.d)
